"""benchmarks/run.py: the arithmetic behind its "what the processor allows" line (the timings
themselves are measured by running the benchmark, never by tests)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import run as benchmark  # noqa: E402  (benchmarks/run.py)


def test_encoder_flops_counts_the_multiply_adds_of_every_layer():
    flops = benchmark.encoder_flops(["hello world"], "default")  # all-MiniLM-L6-v2; [CLS] hello world [SEP]: 4 tokens
    n, hidden, inner, layers = 4, 384, 1536, 6
    expected = layers * (8 * n * hidden**2 + 4 * n * hidden * inner + 4 * n**2 * hidden) / 1e9
    assert (flops["layers"], flops["hidden"], flops["intermediate"]) == (layers, hidden, inner)
    assert flops["gflop_per_paragraph"] == pytest.approx(expected, abs=5e-4)
    longer = benchmark.encoder_flops(["hello world " * 50], "default")["gflop_per_paragraph"]
    assert longer > 20 * flops["gflop_per_paragraph"]  # grows with the real token count


def test_compute_bound_relates_each_path_and_the_3x_target_to_the_peak():
    rows = [{"backend": "torch", "precision": "fp32", "paragraphs_per_s": 10.0},
            {"backend": "openvino", "precision": "fp32", "paragraphs_per_s": 20.0}]
    bound = benchmark.compute_bound(rows, {"gflop_per_paragraph": 2.0}, peak=100.0)
    assert bound["paths"] == {"torch-fp32": {"gflop_per_s": 20.0, "share_of_fp32_peak": 0.2},
                              "openvino-fp32": {"gflop_per_s": 40.0, "share_of_fp32_peak": 0.4}}
    assert bound["three_times_torch_fp32_needs_gflop_per_s"] == 60.0
    assert bound["three_times_torch_fp32_share_of_fp32_peak"] == 0.6
