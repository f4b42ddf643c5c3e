"""Known drifts, errors and refusals as data: each adapter declares its own (`Adapter.findings`).

Every (framework, format, workload) cell of the conformance suite is `exact` unless one of the
framework's findings says otherwise (first match wins) or the format does not hold the workload's
kind. Each finding carries its reason. The conformance tests assert the exact outcome, so a framework
that changes behaviour (fixes a drift or adds one) fails a test and its adapter's findings get
corrected; the README's support table is generated from them. Reasons shared by several adapters
(what safetensors or np.save do) are here, once.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class Expectation:
    status: str
    reason: str | tuple[str, ...] = ""
    changes: tuple[str, ...] = ()
    """For drift: exactly what `bench.conformance.roundtrip.describe_changes` reports."""
    error: str = ""
    """For error: the exception class name the framework raises."""
    signature: str = ""
    """For an upstream error: words of its message that identify it, so that a user's checkpoint meeting the same
    bug is told it is upstream's (`upstream_cause`), not a failure of serbench or of the checkpoint."""

    def reasons(self) -> tuple[str, ...]:
        return self.reason if isinstance(self.reason, tuple) else (self.reason,)


EXACT = Expectation("exact")


@dataclass(frozen=True)
class Finding:
    """What one framework really does with some (format, workload) cells, where it is not `exact`."""

    formats: tuple[str, ...]
    workloads: tuple[str, ...]
    """fnmatch patterns over workload names."""
    expectation: Expectation

    def matches(self, format: str, workload: str) -> bool:
        return format in self.formats and any(fnmatch.fnmatchcase(workload, pattern) for pattern in self.workloads)


SAFETENSORS_ORDER = (
    "safetensors lays tensors out sorted by dtype alignment, then by name, and load_file returns "
    "them in file order: the dict's insertion order is lost"
)
NPY_BFLOAT16 = (
    "the .npy header names dtypes by their array-protocol string and ml_dtypes.bfloat16's is '<V2': "
    "the bits survive but the array comes back as raw 2-byte voids"
)
STACKED_LIST = (
    "np.save calls np.asarray on a list: equal-length arrays stack into one array and int64 with "
    "float32 promotes to float64 (d2l's TensorFlow recipe shows the same)"
)

SAFETENSORS_KEY_ORDER = Finding(
    ("safetensors",),
    ("keys-unicode", "keys-dotted", "keys-slash", "keys-order", "size-64MiB", "vgg16"),
    Expectation("drift", SAFETENSORS_ORDER, ("root: key order changed",)),
)
"""Every adapter's safetensors: the insertion order of a dict is lost."""
NPY_PICKLE_STACKED_LIST = Finding(
    ("npy-pickle",), ("d2l-list",), Expectation("drift", STACKED_LIST, ("root: list -> tensor float64(2, 4)",))
)


@dataclass(frozen=True)
class SafetyFinding:
    """What a format's loaders do with some inputs of the safety matrix, where it is not the default
    (the valid file loads exactly; every hostile or damaged input gives a clear error). Each format
    declares its own (`FormatSpec.safety_findings`, first match wins), with the reason."""

    modes: tuple[str, ...]
    """fnmatch patterns over load modes: "serbench", "serbench trusted", the labels of `framework_loaders`."""
    inputs: tuple[str, ...]
    """fnmatch patterns over input names."""
    outcome: str
    reason: str

    def matches(self, mode: str, name: str) -> bool:
        return any(fnmatch.fnmatchcase(mode, pattern) for pattern in self.modes) and any(
            fnmatch.fnmatchcase(name, pattern) for pattern in self.inputs
        )


UNPICKLES = "unpickling calls whatever the pickle names; the canary's __reduce__ names open(marker)"
NO_CHECKSUM = "the format stores raw bytes with no checksum, so a flipped bit in the data loads silently"
TRAILING = "the reader stops where its header says the data ends; appended bytes are ignored"
FIFO_OPENED = (
    "the framework's loader opens whatever path it is given; a FIFO blocks the open (or the read) until a writer "
    "comes, which may be never. serbench checks for a regular file first"
)

TRAILING_IGNORED = SafetyFinding(("*",), ("garbage-appended",), "loaded-exact", TRAILING)
UNCHECKED_DATA = SafetyFinding(("*",), ("flipped-data-byte",), "silent-wrong-data", NO_CHECKSUM)


def fifo_blocks(loaders: object) -> tuple[SafetyFinding, ...]:
    """The framework's own `loaders` (labels, or a `framework_loaders` mapping) block on a FIFO."""
    labels = tuple(loaders)
    return (SafetyFinding(labels, ("fifo",), "hang", FIFO_OPENED),) if labels else ()


def upstream_cause(findings: tuple[Finding, ...], format: str, note: str) -> str:
    """The reason of the upstream bug among `findings` (of `format`) whose error and signature `note` shows, or ""
    (a failure of a user's checkpoint, named as the library's bug where it is one)."""
    for finding in findings:
        expected = finding.expectation
        if (
            format in finding.formats
            and expected.status == "error"
            and expected.signature
            and expected.error in note
            and expected.signature in note
        ):
            return expected.reasons()[0]
    return ""
