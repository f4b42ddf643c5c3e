"""A fifth adapter that exists only in tests: registered at run time by `tests/test_extra_adapter.py`
to show that serbench finds a new framework through the registry alone.

It is NumPy under another name with one format of its own, `toy-npz` (an npz with its own suffix),
and one known drift, declared here like any adapter's.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from frameworks import files
from frameworks.base import FormatSpec
from frameworks.findings import NPY_BFLOAT16, Expectation, Finding
from frameworks.numpy_adapter import NPZ, NumpyAdapter

TOY_NPZ = FormatSpec(
    "toy-npz",
    frozenset({"dict", "mlp"}),
    "a test-only adapter's npz",
    "a zip archive of .npy members",
    files.is_npz,
    suffix=".toy.npz",
    validate=NPZ.validate,
    save=NPZ.save,
    load=NPZ.load,
    framework_loaders={"np.load allow_pickle=False": lambda adapter, path: dict(np.load(path, allow_pickle=False))},
)


class ToyAdapter(NumpyAdapter):
    name = "toy"
    specs = (TOY_NPZ,)
    native_mlp_format = "toy-npz"
    packages = ("numpy",)
    findings = (
        Finding(
            ("toy-npz",),
            ("dtype-bfloat16/dict",),
            Expectation("drift", NPY_BFLOAT16, ("root['value']: dtype bfloat16 -> |V2",)),
        ),
    )


BROKEN_TOY_NPZ = dataclasses.replace(
    TOY_NPZ,
    description="a test-only adapter's npz whose loader silently widens every array to float64 (a regression)",
    load=lambda adapter, path, device: {
        key: np.asarray(value, np.float64) for key, value in NPZ.load(adapter, path, device).items()
    },
)


class BrokenToyAdapter(ToyAdapter):
    """The toy adapter after a regression its findings do not declare: `serbench recipes` must say FAIL."""

    name = "broken-toy"
    specs = (BROKEN_TOY_NPZ,)
