"""Which of the encoder's layers the classifier should read: a lead beyond the last layer.

    python studies/layer_pooling.py      # needs the hydrated real set (`stance hydrate`)

sentence-transformers gives the mean of the encoder's last hidden layer (normalised). This study
mean-pools every hidden layer of the default encoder (`embedding.model`, fp32 on the pinned code
paths of `pipeline.numerics`) and compares classifiers that read other layers, or several layers
at once, with the one that reads the last. Each candidate is trained on the labelled corpus, as
`stance train` trains, and scored on the real development set read as `stance score` reads it
(blended with the strongest sentence at `score.sentence_weight`), so every figure compares with the
shipped reading (of whole-paragraph vectors: each paragraph and sentence is pooled whole here,
as with `embedding.paragraph_vector: whole`, which was shipped when this ran). Candidates are
ranked on the `select` half and the best is reported on the
`report` half, with a 95% interval resampling pages. Nothing here is shipped. The pooled layers
are cached in `.cache/layer_pooling/` (git-ignored). Writes `reports/layer_pooling.md` and `.json`
(figures only, never the pages' text).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))

from pipeline.numerics import pin  # noqa: E402

NUMERICS = pin()  # before numpy and torch load: the same bits on every x86-64 processor

import numpy as np  # noqa: E402

from model_selection import halves_figures, labelled_corpus, read_as_scored  # noqa: E402
from pipeline.corpus.real_set import load_hydrated  # noqa: E402
from pipeline.encoder.identity import model_identity, resolve_model  # noqa: E402
from pipeline.files import load_params, write_json_atomic, write_text_atomic  # noqa: E402
from pipeline.model.features import model_inputs  # noqa: E402
from pipeline.model.train import build_classifier, f_avg  # noqa: E402
from pipeline.scoring.sentences import sentence_rows  # noqa: E402

BATCH = 16
# name: (layers, how they are joined). "mean": the normalised mean of the layers' normalised
# pools (one 768-vector); "concat": the normalised pools side by side, scaled to unit length.
CANDIDATES = {
    "last (shipped)": ([12], "mean"),
    "layer 9": ([9], "mean"), "layer 10": ([10], "mean"), "layer 11": ([11], "mean"),
    "mean of 9-12": ([9, 10, 11, 12], "mean"), "mean of 6-12": ([6, 7, 8, 9, 10, 11, 12], "mean"),
    "concat 9-12": ([9, 10, 11, 12], "concat"), "concat 6, 12": ([6, 12], "concat"),
}
C_VALUES = [1.0, 10.0]


def layer_pools(params: dict, texts: list[str]) -> np.ndarray:
    """(texts, layers, width) mean pools of every hidden layer, cached by model and texts."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    spec = params["embedding"]["model"]
    key = hashlib.sha256("\n\x00".join([model_identity(spec), *texts]).encode()).hexdigest()[:20]
    cache = ROOT / ".cache" / "layer_pooling" / f"{key}.npy"
    if cache.exists():
        return np.load(cache)
    path = resolve_model(spec)
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    config = Path(path) / "sentence_bert_config.json"  # sentence-transformers' max_seq_length, as it truncates
    limit = json.loads(config.read_text())["max_seq_length"] if config.exists() else tokenizer.model_max_length
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    pools = None
    for start in range(0, len(order), BATCH):
        rows = order[start:start + BATCH]
        batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=limit,
                          return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].unsqueeze(-1).float()
        layers = torch.stack([(h * mask).sum(1) / mask.sum(1) for h in hidden], dim=1).numpy()
        if pools is None:
            pools = np.zeros((len(texts), *layers.shape[1:]), dtype=np.float32)
        pools[rows] = layers
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, pools)
    return pools


def represent(pools: np.ndarray, layers: list[int], join: str) -> np.ndarray:
    parts = [pools[:, layer] / np.linalg.norm(pools[:, layer], axis=1, keepdims=True) for layer in layers]
    if join == "concat":
        return np.hstack(parts) / np.sqrt(len(parts))
    mean = np.mean(parts, axis=0)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def main() -> None:
    params = load_params(ROOT / "params.yaml")
    paths, seed = params["paths"], int(params["seed"])
    weight = float(params["score"]["sentence_weight"])
    features = params["train"]["features"]
    feature_params = params["train"].get("feature_params") or {}
    corpus, y = labelled_corpus(params)
    real = load_hydrated(ROOT / paths["real_dir"], ROOT / paths["real_manifest"])
    gold = np.array([r["label"] for r in real])
    pages = np.array([r["url"] for r in real])
    halves = np.array([r["half"] for r in real])
    corpus_texts, real_texts = [r["text"] for r in corpus], [r["text"] for r in real]
    owner, sentence_texts = sentence_rows(real_texts)
    pools = {name: layer_pools(params, texts) for name, texts in
             (("corpus", corpus_texts), ("real", real_texts), ("sentences", sentence_texts))}

    rows = []
    for (name, (layers, join)), C in itertools.product(CANDIDATES.items(), C_VALUES):
        X, R, S = (represent(pools[part], layers, join) for part in ("corpus", "real", "sentences"))
        classifier = build_classifier("logistic_regression", {**params["train"]["classifier_params"], "C": C},
                                      seed, features, feature_params)
        classifier.fit(model_inputs(corpus_texts, X), y)
        alone, scored = read_as_scored(classifier, real_texts, R, sentence_texts, S, np.asarray(owner), weight)
        figures = halves_figures(gold, scored, pages, halves, seed)
        row = {"candidate": name, "layers": layers, "join": join, "C": C,
               "select": figures["select"]["f_avg"], "report": figures["report"]["f_avg"],
               "report_interval": figures["report"]["interval"],
               **{f"{half}_alone": round(f_avg(gold[halves == half], alone[halves == half]), 4)
                  for half in ("select", "report")}}
        rows.append(row)
        print(row, flush=True)

    best = max(rows, key=lambda r: (r["select"], -r["C"]))
    shipped = next(r for r in rows if r["layers"] == [12] and r["C"] == params["train"]["grid"]["C"][0])
    out = {"model": model_identity(params["embedding"]["model"]), "features": features, "numerics": NUMERICS,
           "sentence_weight": weight, "best_on_select": best, "shipped_reading": shipped, "table": rows}
    write_json_atomic(ROOT / "reports" / "layer_pooling.json", out)
    lines = ["# Which encoder layers the classifier reads", "",
             f"Encoder `{out['model']}`, features `{features}`, trained on the labelled corpus; real paragraphs "
             f"read as `stance score` reads them (strongest sentence at {weight}). Paragraph f_avg; candidates "
             "ranked on the select half, the report half untouched by the choice (95% interval resampling "
             f"pages). {NUMERICS}. Made by `python studies/layer_pooling.py`; nothing here is shipped.", "",
             f"Best on the select half: **{best['candidate']}**, C={best['C']}: select {best['select']:.3f}, "
             f"report **{best['report']:.3f}** ({best['report_interval'][0]:.2f}–{best['report_interval'][1]:.2f}). "
             f"The shipped reading (last layer, C={shipped['C']}): select {shipped['select']:.3f}, report "
             f"{shipped['report']:.3f}.", "",
             "| candidate | C | select | report (95% CI) | select, paragraphs alone | report, paragraphs alone |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['candidate']} | {r['C']:g} | {r['select']:.3f} | {r['report']:.3f} ({r['report_interval'][0]:.2f}–"
              f"{r['report_interval'][1]:.2f}) | {r['select_alone']:.3f} | {r['report_alone']:.3f} |" for r in rows]
    write_text_atomic(ROOT / "reports" / "layer_pooling.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
