"""Which model and precision: auto precision follows the processor's bf16 matrix units."""

from __future__ import annotations

import pytest

from pipeline.encoder import identity


def test_bf16_needs_matrix_units_not_just_avx512_bf16():
    assert identity.has_bf16_matrix_units("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    assert not identity.has_bf16_matrix_units("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert not identity.has_bf16_matrix_units("model name\t: amx_bf16 lookalike\n")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_processor(monkeypatch, native, expected):
    monkeypatch.setattr(identity, "cpu_has_native_bf16", lambda: native)
    assert identity.resolve_precision("auto") == expected
    assert identity.resolve_precision("fp32") == "fp32" and identity.resolve_precision("bf16") == "bf16"
