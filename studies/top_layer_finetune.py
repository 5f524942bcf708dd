"""Fine-tuning the encoder's top layers on the corpus: how far the open lead goes, cheaply.

    python studies/top_layer_finetune.py cache          # layers 0..7 once, for every piece of text
    python studies/top_layer_finetune.py train SEED     # layers 8..11 + a head, 2 epochs; figures
    python studies/top_layer_finetune.py soup SEED...   # the average of several runs' top layers
    python studies/top_layer_finetune.py report         # reports/top_layer_finetune.md and .json

Needs the hydrated real set (`stance hydrate`). Fine-tuning the whole of all-mpnet-base-v2 takes
17-21 minutes an epoch here and was unstable across seeds (README, "Current results"). Here the
lower 8 of its 12 layers run once (bf16, no gradients) and their token states are cached for every
piece of text a paragraph vector is built from (`pipeline.encoder.paragraph_vectors`: its
sentences, or the paragraph when it has one); only layers 8-11 and a linear head are trained,
on the labelled corpus, each paragraph's vector built as the shipped sentence-mean reading builds
it (the head warm-started from a logistic regression on the untouched vectors, class-weighted
cross-entropy, AdamW at 2e-5 with warm-up and linear decay, batches of 16 paragraphs). Every half
epoch the tuned encoder's vectors feed the shipped classifier (words + embedding, C=1) and the
embedding alone, trained on the corpus and read on the real set's two halves as `stance score`
reads it (with the strongest sentence) and alone. Nothing here is shipped: the figures are for
the README. State and logs live in `.cache/top_layer_finetune/` (git-ignored); the report holds
figures only, never the pages' text.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from model_selection import fit_predict, halves_figures, labelled_corpus  # noqa: E402
from pipeline import LABELS  # noqa: E402
from pipeline.corpus.real_set import load_hydrated  # noqa: E402
from pipeline.encoder.identity import resolve_model  # noqa: E402
from pipeline.encoder.paragraph_vectors import combine  # noqa: E402
from pipeline.encoder.sentence_rule import split_sentences  # noqa: E402
from pipeline.files import write_json_atomic, write_text_atomic  # noqa: E402
from pipeline.project import project_params  # noqa: E402
from pipeline.scoring.sentences import sentence_rows  # noqa: E402

FROZEN_LAYERS = 8  # layers 0..7 cached; 8..11 trained
EPOCHS, LEARNING_RATE, HEAD_RATE, BATCH = 2, 2e-5, 1e-3, 16
STATE = ROOT / ".cache" / "top_layer_finetune"
READINGS = {"shipped": ("text+embedding", {"embedding_weight": 1.0, "min_df": 2}), "embedding": ("embedding", None)}


class Study:
    """The corpus, the real set, every piece of text their vectors are built from, and the encoder."""

    def __init__(self):
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(2)
        self.params = params = project_params(ROOT / "params.yaml")
        self.corpus, self.y = labelled_corpus(params)
        real = load_hydrated(params["paths"]["real_dir"], params["paths"]["real_manifest"])
        self.gold = np.array([r["label"] for r in real])
        self.pages = np.array([r["url"] for r in real])
        self.halves = np.array([r["half"] for r in real])
        self.train_texts = [r["text"] for r in self.corpus]
        self.real_texts = [r["text"] for r in real]
        self.owner, self.sentence_texts = sentence_rows(self.real_texts)
        self.corpus_split = [split_sentences(t) or [t] for t in self.train_texts]
        self.real_split = [split_sentences(t) or [t] for t in self.real_texts]
        self.pieces = list(dict.fromkeys([p for s in self.corpus_split + self.real_split for p in s]
                                         + self.sentence_texts))
        self.index = {p: i for i, p in enumerate(self.pieces)}
        path = resolve_model(params["embedding"]["model"])
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path)
        self.cache_file = STATE / f"states_{FROZEN_LAYERS}.pt"

    def cache(self) -> None:
        """Each piece's token states after the frozen layers, trimmed to its length."""
        self.model.eval()
        states = [None] * len(self.pieces)
        order = sorted(range(len(self.pieces)), key=lambda i: len(self.pieces[i]))
        t0 = time.time()
        for s in range(0, len(order), 64):
            idx = order[s:s + 64]
            batch = self.tokenizer([self.pieces[i] for i in idx], padding=True, truncation=True,
                                   max_length=384, return_tensors="pt")
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                hidden = self.model(**batch, output_hidden_states=True).hidden_states[FROZEN_LAYERS]
            for j, i in enumerate(idx):
                states[i] = hidden[j, : int(batch["attention_mask"][j].sum())].to(torch.bfloat16).clone()
        STATE.mkdir(parents=True, exist_ok=True)
        torch.save(states, self.cache_file)
        print(json.dumps({"cached": len(self.pieces), "K": FROZEN_LAYERS, "s": round(time.time() - t0)}), flush=True)

    def top(self, states_batch) -> torch.Tensor:
        """Unit vectors of pieces: their cached states through the trained layers, mean-pooled."""
        from transformers.masking_utils import create_bidirectional_mask

        n = max(len(s) for s in states_batch)
        hidden = torch.zeros(len(states_batch), n, 768)
        attention = torch.zeros(len(states_batch), n, dtype=torch.long)
        for j, s in enumerate(states_batch):
            hidden[j, : len(s)] = s.float()
            attention[j, : len(s)] = 1
        encoder = self.model.encoder
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bias = encoder.compute_position_bias(hidden)
            mask = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden, attention_mask=attention)
            for layer in encoder.layer[FROZEN_LAYERS:]:
                hidden = layer(hidden, mask, bias)[0]
        weight = attention.unsqueeze(-1).float()
        return torch.nn.functional.normalize((hidden.float() * weight).sum(1) / weight.sum(1), dim=-1)

    def paragraph_vectors(self, split, piece_vectors) -> np.ndarray:
        return np.stack([combine([piece_vectors[self.index[p]] for p in parts], parts) for parts in split])

    def all_piece_vectors(self, states) -> np.ndarray:
        self.model.eval()
        out = np.zeros((len(self.pieces), 768), dtype=np.float32)
        order = sorted(range(len(self.pieces)), key=lambda i: len(states[i]))
        with torch.no_grad():
            for s in range(0, len(order), 128):
                idx = order[s:s + 128]
                out[idx] = self.top([states[i] for i in idx]).numpy()
        self.model.train()
        return out

    def evaluate(self, states, tag: str, t0: float) -> np.ndarray:
        """f_avg [select, report, all] of each reading, as scored and (`_alone`) paragraphs alone."""
        V = self.all_piece_vectors(states)
        X, R = self.paragraph_vectors(self.corpus_split, V), self.paragraph_vectors(self.real_split, V)
        S = V[[self.index[p] for p in self.sentence_texts]]
        out = {"tag": tag, "s": round(time.time() - t0)}
        for name, (features, feature_params) in READINGS.items():
            alone, predicted = fit_predict(self.params, features, feature_params, 1.0, self.train_texts, X, self.y,
                                           (self.real_texts, self.sentence_texts, self.owner, S), R)
            f = halves_figures(self.gold, predicted, self.pages, self.halves, 0)
            out[name] = [f["select"]["f_avg"], f["report"]["f_avg"], f["all"]["f_avg"]]
            f = halves_figures(self.gold, alone, self.pages, self.halves, 0)
            out[name + "_alone"] = [f["select"]["f_avg"], f["report"]["f_avg"]]
        print(json.dumps(out), flush=True)
        return V

    def train(self, seed: int) -> None:
        from sklearn.linear_model import LogisticRegression

        states = torch.load(self.cache_file)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        t0 = time.time()
        for p in self.model.parameters():
            p.requires_grad = False
        trainable = [p for layer in self.model.encoder.layer[FROZEN_LAYERS:] for p in layer.parameters()]
        for p in trainable:
            p.requires_grad = True
        V = self.evaluate(states, "start", t0)
        warm = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(
            self.paragraph_vectors(self.corpus_split, V), self.y)
        head = torch.nn.Linear(768, 3)
        rows_in_order = [list(warm.classes_).index(label) for label in LABELS]
        head.weight.data = torch.tensor(warm.coef_[rows_in_order], dtype=torch.float32)
        head.bias.data = torch.tensor(warm.intercept_[rows_in_order], dtype=torch.float32)
        yi = np.array([LABELS.index(label) for label in self.y])
        counts = np.bincount(yi, minlength=3)
        class_weights = torch.tensor(len(yi) / (3 * counts), dtype=torch.float32)
        optimiser = torch.optim.AdamW([{"params": trainable, "lr": LEARNING_RATE},
                                       {"params": head.parameters(), "lr": HEAD_RATE}], weight_decay=0.01)
        steps_per_epoch = math.ceil(len(yi) / BATCH)
        total = steps_per_epoch * EPOCHS
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda s: min(1.0, (s + 1) / (0.1 * total)) * max(0.0, (total - s) / total))
        self.model.train()
        step = 0
        for _ in range(EPOCHS):
            order = rng.permutation(len(yi))
            for b0 in range(0, len(order), BATCH):
                rows = order[b0:b0 + BATCH]
                pieces = list(dict.fromkeys(p for r in rows for p in self.corpus_split[r]))
                at = {p: i for i, p in enumerate(pieces)}
                piece_vectors = self.top([states[self.index[p]] for p in pieces])
                # `pipeline.encoder.paragraph_vectors.combine`, in torch so the gradient reaches the layers
                vectors = []
                for r in rows:
                    parts = self.corpus_split[r]
                    if len(parts) == 1:
                        vectors.append(piece_vectors[at[parts[0]]])
                        continue
                    words = torch.tensor([len(p.split()) for p in parts], dtype=torch.float32)
                    vectors.append(torch.nn.functional.normalize(
                        (words[:, None] * piece_vectors[[at[p] for p in parts]]).sum(0), dim=0))
                loss = torch.nn.functional.cross_entropy(head(torch.stack(vectors)), torch.tensor(yi[rows]),
                                                         weight=class_weights)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimiser.step()
                schedule.step()
                optimiser.zero_grad()
                step += 1
                if step % 50 == 0:
                    print(json.dumps({"step": step, "of": total, "loss": round(loss.item(), 4),
                                      "s": round(time.time() - t0)}), flush=True)
                if step % (steps_per_epoch // 2) == 0:
                    self.evaluate(states, f"epoch {step / steps_per_epoch:.1f}", t0)
        torch.save({k: v for k, v in self.model.state_dict().items() if k.startswith("encoder.layer.")},
                   STATE / f"top_{FROZEN_LAYERS}_{seed}_{LEARNING_RATE}.pt")

    def soup(self, seeds: list[int]) -> None:
        tuned = [torch.load(STATE / f"top_{FROZEN_LAYERS}_{seed}_{LEARNING_RATE}.pt") for seed in seeds]
        self.model.load_state_dict({k: sum(d[k].float() for d in tuned) / len(tuned) for k in tuned[0]}, strict=False)
        self.evaluate(torch.load(self.cache_file), f"soup of seeds {','.join(map(str, seeds))}", time.time())


def report() -> None:
    """Collects the runs' logs (`train` and `soup` output saved as STATE/run_*.log)."""
    runs = {}
    for log in sorted(STATE.glob("run_*.log")):
        runs[log.stem.removeprefix("run_")] = [json.loads(line) for line in log.read_text().splitlines()
                                              if line.startswith('{"tag"')]
    from benchmarks.run import machine

    # bf16 training moves with the processor's bf16 units: the machine is part of the result.
    results = {"frozen_layers": FROZEN_LAYERS, "epochs": EPOCHS, "learning_rate": LEARNING_RATE, "runs": runs,
               "machine": machine()}
    write_json_atomic(ROOT / "reports" / "top_layer_finetune.json", results)
    lines = ["# Fine-tuning the encoder's top layers (study)", "",
             f"all-mpnet-base-v2, layers 0-{FROZEN_LAYERS - 1} frozen, layers {FROZEN_LAYERS}-11 and a linear head "
             f"trained on the labelled corpus for {EPOCHS} epochs at {LEARNING_RATE}; read on the real set's halves "
             "(`studies/top_layer_finetune.py`). Each cell is f_avg select / report; \"as scored\" blends the "
             "strongest sentence as `stance score` does, \"alone\" reads paragraphs alone. Machine: "
             f"{results['machine'].get('model name', '?')} (family {results['machine'].get('cpu family', '?')}, "
             f"model {results['machine'].get('model', '?')}, AMX bf16: {results['machine']['native_bf16 (AMX)']}).", "",
             "| run | checkpoint | shipped features, as scored | shipped, alone | embedding, as scored | embedding, alone |",
             "|---|---|---|---|---|---|"]
    for run, rows in runs.items():
        for row in rows:
            cells = [f"{row[k][0]:.3f} / {row[k][1]:.3f}" for k in ("shipped", "shipped_alone", "embedding",
                                                                   "embedding_alone")]
            lines.append(f"| {run} | {row['tag']} | " + " | ".join(cells) + " |")
    write_text_atomic(ROOT / "reports" / "top_layer_finetune.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "report":
        report()
    elif command in ("cache", "train", "soup"):
        study = Study()
        if command == "cache":
            study.cache()
        elif command == "train":
            study.train(int(sys.argv[2]))
        else:
            study.soup([int(s) for s in sys.argv[2:]])
    else:
        sys.exit(__doc__)
