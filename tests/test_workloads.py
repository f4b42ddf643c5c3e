"""Workloads are deterministic, shaped as documented, and stress what they claim to."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from bench import workloads
from frameworks.trees import leaves, tree_kind


@pytest.mark.parametrize("name", [w.name for w in workloads.select(("small", "medium"))])
def test_workload_is_deterministic_and_of_its_kind(name: str) -> None:
    workload = workloads.WORKLOADS[name]
    first, second = workload.build(), workload.build()
    assert [a.tobytes() for a in leaves(first)] == [b.tobytes() for b in leaves(second)]
    expected_kind = {"mlp": "dict", "checkpoint": "nested"}.get(workload.kind, workload.kind)
    assert tree_kind(first) == expected_kind


def test_vgg16_shapes_are_the_real_138m_parameters() -> None:
    total = sum(math.prod(shape) for shape in workloads.VGG16_SHAPES.values())
    assert total == workloads.VGG16_PARAMETERS == 138_357_544
    assert total * 4 == 553_430_176
    assert workloads.VGG16_SHAPES["classifier.0.weight"] == (4096, 25088)
    assert len(workloads.VGG16_SHAPES) == 32


def test_dtype_matrix_covers_every_listed_dtype() -> None:
    for label, dtype in workloads.DTYPES.items():
        array = workloads.build(f"dtype-{label}/tensor")
        assert array.dtype == np.dtype(dtype)
        assert len(np.unique(array)) > 1, f"{label} probe is constant"
    assert workloads.build("dtype-bfloat16/tensor").dtype == ml_dtypes.bfloat16


def test_edge_and_special_probes_are_what_they_claim() -> None:
    assert workloads.build("shape-0d/tensor").shape == ()
    assert workloads.build("shape-empty/tensor").shape == (0, 3)
    assert not workloads.build("layout-noncontiguous/tensor").flags.c_contiguous
    fortran = workloads.build("layout-fortran/tensor")
    assert fortran.flags.f_contiguous
    assert not fortran.flags.c_contiguous
    specials = workloads.build("special-float32/tensor")
    assert specials.view(np.uint32)[0] == 0x7FC00001
    assert np.signbit(specials[5])
    assert specials[5] == 0
    assert 0 < specials[7] < np.finfo(np.float32).tiny


def test_mlp_parameters_have_d2l_shapes_and_differ_by_seed() -> None:
    params = workloads.mlp_parameters(0)
    assert {k: v.shape for k, v in params.items()} == {
        "hidden.weight": (256, 20),
        "hidden.bias": (256,),
        "output.weight": (10, 256),
        "output.bias": (10,),
    }
    assert not np.array_equal(params["hidden.weight"], workloads.mlp_parameters(1)["hidden.weight"])


def test_payload_bytes_counts_every_leaf() -> None:
    assert workloads.payload_bytes(workloads.build("d2l-list")) == 4 * 8 + 4 * 4
