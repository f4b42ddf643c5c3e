"""What each framework really preserves: the round-trip suite's expectations, as data.

Every (framework, format, workload) is `exact` unless a finding below says otherwise or the
format does not hold the workload's kind. Each finding carries its reason. The conformance tests
assert the exact outcome, so a framework that changes behaviour (fixes a drift or adds one) fails
a test and this table gets corrected. The README's support table is generated from this module.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import frameworks
from bench.workloads import Workload


def holds(framework: str, format: str) -> frozenset[str]:
    """Kinds the format can store, from the adapter's spec (the one place that says so); anything
    else must raise UnsupportedError naming both."""
    return frameworks.adapter_class(framework).spec(format).holds


@dataclass(frozen=True)
class Expectation:
    status: str
    reason: str | tuple[str, ...] = ""
    changes: tuple[str, ...] = ()
    """For drift: exactly what `bench.roundtrip.describe_changes` reports."""
    error: str = ""
    """For error: the exception class name the framework raises."""

    def reasons(self) -> tuple[str, ...]:
        return self.reason if isinstance(self.reason, tuple) else (self.reason,)


EXACT = Expectation("exact")


@dataclass(frozen=True)
class Finding:
    frameworks: tuple[str, ...]
    formats: tuple[str, ...]
    workloads: tuple[str, ...]
    """fnmatch patterns over workload names."""
    expectation: Expectation

    def matches(self, framework: str, format: str, workload: str) -> bool:
        return (
            framework in self.frameworks
            and format in self.formats
            and any(fnmatch.fnmatchcase(workload, pattern) for pattern in self.workloads)
        )


SAFETENSORS_ORDER = (
    "safetensors lays tensors out sorted by dtype alignment, then by name, and load_file returns "
    "them in file order: the dict's insertion order is lost"
)
NPY_BFLOAT16 = (
    "the .npy header names dtypes by their array-protocol string and ml_dtypes.bfloat16's is '<V2': "
    "the bits survive but the array comes back as raw 2-byte voids"
)
NP_SAFETENSORS_0D = "safetensors.numpy (0.8) gives a 0-d tensor back with shape (1,); safetensors.torch keeps ()"
STACKED_LIST = (
    "np.save calls np.asarray on a list: equal-length arrays stack into one array and int64 with "
    "float32 promotes to float64 (d2l's TensorFlow recipe shows the same)"
)

FINDINGS: tuple[Finding, ...] = (  # first match wins
    Finding(
        ("mxnet",),
        ("mx-ndarray", "gluon-params", "safetensors"),
        ("dtype-bfloat16/*",),
        Expectation(
            "unsupported",
            "MXNet has no NumPy bfloat16 interop: mx.np.array silently turns "
            "ml_dtypes.bfloat16 into float32, so the adapter refuses it",
        ),
    ),
    Finding(
        ("numpy",),
        ("npy", "npy-pickle"),
        ("dtype-bfloat16/tensor",),
        Expectation("drift", NPY_BFLOAT16, ("root: dtype bfloat16 -> |V2",)),
    ),
    Finding(
        ("numpy",),
        ("npz",),
        ("dtype-bfloat16/dict",),
        Expectation("drift", NPY_BFLOAT16, ("root['value']: dtype bfloat16 -> |V2",)),
    ),
    Finding(
        ("tensorflow",),
        ("npy-pickle",),
        ("dtype-bfloat16/tensor",),
        Expectation("error", (NPY_BFLOAT16, "TensorFlow cannot make a tensor of voids"), error="ValueError"),
    ),
    Finding(
        ("numpy", "tensorflow"),
        ("npy-pickle",),
        ("d2l-list",),
        Expectation("drift", STACKED_LIST, ("root: list -> tensor float64(2, 4)",)),
    ),
    Finding(
        ("numpy", "mxnet"),
        ("safetensors",),
        ("shape-0d/dict",),
        Expectation("drift", NP_SAFETENSORS_0D, ("root['value']: shape () -> (1,)",)),
    ),
    Finding(
        ("numpy", "mxnet"),
        ("safetensors",),
        ("keys-dotted",),
        Expectation(
            "drift",
            (SAFETENSORS_ORDER, NP_SAFETENSORS_0D),
            ("root: key order changed", "root['layer1.1.num_batches_tracked']: shape () -> (1,)"),
        ),
    ),
    Finding(
        ("tensorflow",),
        ("safetensors",),
        ("shape-0d/dict", "keys-dotted"),
        Expectation(
            "error",
            "safetensors.tensorflow (0.8) fails on 0-d tensors: 'numpy.float32' object has no attribute 'ctypes'",
            error="AttributeError",
        ),
    ),
    Finding(
        ("numpy", "torch", "tensorflow", "mxnet"),
        ("safetensors",),
        ("keys-unicode", "keys-dotted", "keys-slash", "keys-order", "size-64MiB", "vgg16"),
        Expectation("drift", SAFETENSORS_ORDER, ("root: key order changed",)),
    ),
    Finding(
        ("numpy",),
        ("safetensors",),
        ("d2l-mlp",),
        Expectation(
            "drift",
            (
                SAFETENSORS_ORDER,
                "the NumPy 'model' is the loaded dict itself, while the other frameworks load by name into a module",
            ),
            ("root: key order changed",),
        ),
    ),
    Finding(
        ("tensorflow",),
        ("tf-checkpoint",),
        ("d2l-list",),
        Expectation(
            "drift",
            "a checkpoint's object graph names children but does not record whether "
            "the parent was a list or a dict; read without a template, a list comes back as "
            "a dict keyed '0', '1', ...",
            ("root: list -> dict with keys ['0', '1']",),
        ),
    ),
    Finding(
        ("tensorflow",),
        ("tf-checkpoint",),
        ("nested",),
        Expectation(
            "drift",
            "as for d2l-list: the object graph does not say a child was a list",
            ("root['history']: list -> dict with keys ['0', '1']",),
        ),
    ),
    Finding(
        ("mxnet",),
        ("mx-ndarray",),
        ("d2l-tensor", "*/tensor"),
        Expectation(
            "drift",
            "npx.save stores a list of arrays, so a single array comes back as a "
            "one-element list (the d2l chapter prints `[array([0., 1., 2., 3.])]`)",
            ("root: tensor -> list of 1",),
        ),
    ),
)


def expected(framework: str, format: str, workload: Workload) -> Expectation:
    """The outcome the suite expects for one cell of the matrix."""
    for finding in FINDINGS:
        if finding.matches(framework, format, workload.name):
            return finding.expectation
    held = holds(framework, format)
    if workload.kind not in held:
        return Expectation("unsupported", f"{format} holds {', '.join(sorted(held))}, not a {workload.kind}")
    return EXACT
