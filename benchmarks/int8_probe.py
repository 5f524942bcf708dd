"""Probe: would int8 make the encoder faster on this processor, and how close would it stay to fp32?

    python3 -m venv /tmp/int8 && /tmp/int8/bin/pip install -e . nncf    # NNCF is not a project dependency
    /tmp/int8/bin/python benchmarks/int8_probe.py                     # about 5 minutes on 2 cores

Quantizes the project's OpenVINO export (made first if missing) with NNCF post-training
quantization (weights and activations int8, transformer mode, calibrated on `--calibration`
generated paragraphs), then encodes `--paragraphs` other generated paragraphs with the fp32
export and with each int8 variant, interleaved, best of `--repeats`. Reports paragraphs/s, the
speed-up over the fp32 export and the cosine of each int8 embedding to its fp32 one (the issue's
bar for a default path: >= 0.999). Prints a table and writes reports/int8_probe.json.

Not part of the pipeline: nothing here is shipped, the int8 models live in a temporary directory.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import corpus  # noqa: E402  (benchmarks/corpus.py)

PRESETS = ("mixed", "performance")


def quantize(source: Path, target: Path, layout, texts: list[str], preset: str) -> float:
    """An int8 copy of the export in `source` written to `target`; returns the seconds it took."""
    import nncf
    import openvino as ov

    from pipeline.encoder.openvino_runtime import load_tokenizer

    tokenizer = load_tokenizer(source / "tokenizer.json", layout.max_length)
    model = ov.Core().read_model(source / "model.xml")
    names = [port.get_any_name() for port in model.inputs]

    def item(text: str) -> dict:
        encoding = tokenizer.encode(text)
        arrays = {"input_ids": np.array([encoding.ids], dtype=np.int64),
                  "attention_mask": np.ones((1, len(encoding.ids)), dtype=np.int64),
                  "token_type_ids": np.array([encoding.type_ids], dtype=np.int64)}
        return {name: arrays[name] for name in names}

    started = time.perf_counter()
    quantized = nncf.quantize(model, nncf.Dataset([item(t) for t in texts]), model_type=nncf.ModelType.TRANSFORMER,
                              preset=getattr(nncf.QuantizationPreset, preset.upper()), subset_size=len(texts))
    target.mkdir(parents=True)
    ov.save_model(quantized, target / "model.xml", compress_to_fp16=False)
    shutil.copy(source / "tokenizer.json", target / "tokenizer.json")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=500)
    parser.add_argument("--calibration", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    try:
        import nncf  # noqa: F401
    except ImportError:
        sys.exit("benchmarks/int8_probe.py needs NNCF (pip install nncf), which the project does not depend on")

    from pipeline.encoder.fast_encoder import OpenVINOEmbedder
    from pipeline.encoder.identity import resolve_model
    from pipeline.encoder.openvino_export import _StagedEncoder, cosines
    from pipeline.encoder.openvino_runtime import encoder_layout
    from pipeline.files import write_json_atomic

    fp32 = OpenVINOEmbedder(precision="fp32", batch_size=args.batch_size, export_dir=ROOT / ".cache" / "openvino")
    fp32.encode(["warm-up"])  # makes the export if missing
    source = fp32.export_path
    layout = encoder_layout(Path(resolve_model("default")))
    texts = corpus.generate(args.paragraphs)
    calibration = corpus.generate(args.calibration, seed=11)

    with tempfile.TemporaryDirectory() as scratch:
        encoders = {"OpenVINO fp32": _StagedEncoder(source, layout, "fp32")}
        seconds = {}
        for preset in PRESETS:
            seconds[preset] = quantize(source, Path(scratch) / preset, layout, calibration, preset)
            encoders[f"OpenVINO int8 ({preset})"] = _StagedEncoder(Path(scratch) / preset, layout, "fp32")
        vectors, best = {}, {name: float("inf") for name in encoders}
        for encoder in encoders.values():
            encoder.batch_size = args.batch_size
            encoder.encode(texts[:16])
        for _ in range(args.repeats):
            for name, encoder in encoders.items():  # interleaved: a slow moment hits every path alike
                started = time.perf_counter()
                vectors[name] = encoder.encode(texts)
                best[name] = min(best[name], time.perf_counter() - started)
    reference = vectors["OpenVINO fp32"]
    rows = []
    for name in encoders:
        similarity = cosines(reference, vectors[name])
        rows.append({"path": name, "paragraphs_per_s": round(len(texts) / best[name], 1),
                     "x_openvino_fp32": round(best["OpenVINO fp32"] / best[name], 2),
                     "cosine_min": round(float(similarity.min()), 4), "cosine_mean": round(float(similarity.mean()), 4)})
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    report = {"measured": time.strftime("%Y-%m-%d %H:%M:%S"), "paragraphs": len(texts), "calibration": len(calibration),
              "repeats": args.repeats, "batch_size": args.batch_size,
              "cpu_int8_units": {flag: flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8")},
              "quantize_s": {preset: round(s, 1) for preset, s in seconds.items()}, "rows": rows}
    print("| path | paragraphs/s | × OpenVINO fp32 | cosine to fp32 (min / mean) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['path']} | {row['paragraphs_per_s']} | {row['x_openvino_fp32']} | "
              f"{row['cosine_min']} / {row['cosine_mean']} |")
    out = ROOT / "reports" / "int8_probe.json"
    write_json_atomic(out, report)
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
