"""What each loader does with hostile and damaged files: the safety suite's expectations, as data.

Defaults: the valid file loads exactly, and every hostile or damaged input gives a clear error.
Each finding below is a known departure with its reason. The tests hold every measured outcome to
this table, so a framework that starts (or stops) executing code, returning wrong data, or
blowing up memory fails a test here.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

DEFAULT_BY_GROUP = {"valid": "loaded-exact", "hostile": "clear-error", "damaged": "clear-error"}


@dataclass(frozen=True)
class SafetyFinding:
    frameworks: tuple[str, ...]
    formats: tuple[str, ...]
    modes: tuple[str, ...]
    """fnmatch patterns over mode names"""
    inputs: tuple[str, ...]
    """fnmatch patterns over input names"""
    outcome: str
    reason: str

    def matches(self, framework: str, fmt: str, mode: str, name: str) -> bool:
        return (
            framework in self.frameworks
            and fmt in self.formats
            and any(fnmatch.fnmatchcase(mode, pattern) for pattern in self.modes)
            and any(fnmatch.fnmatchcase(name, pattern) for pattern in self.inputs)
        )


UNPICKLES = "unpickling calls whatever the pickle names; the canary's __reduce__ names open(marker)"
NO_CHECKSUM = "the format stores raw bytes with no checksum, so a flipped bit in the data loads silently"
TRAILING = "the reader stops where its header says the data ends; appended bytes are ignored"

SAFETY_FINDINGS: tuple[SafetyFinding, ...] = (
    SafetyFinding(
        ("numpy",),
        ("npy", "npz"),
        ("np.load allow_pickle=True",),
        ("canary-*",),
        "code-executed",
        UNPICKLES + " (np.load with allow_pickle=True unpickles object arrays and plain pickles)",
    ),
    SafetyFinding(
        ("numpy", "tensorflow"),
        ("npy-pickle",),
        ("serbench trusted",),
        ("canary-object-array",),
        "code-executed",
        UNPICKLES + " (trusted=True is the explicit opt-in; a bare pickle is still "
        "refused because it lacks the .npy magic)",
    ),
    SafetyFinding(
        ("numpy", "tensorflow"),
        ("npy-pickle",),
        ("serbench",),
        ("valid",),
        "clear-error",
        "serbench refuses pickle-based formats unless trusted=True: safe by default",
    ),
    SafetyFinding(
        ("torch",),
        ("torch",),
        ("torch.load weights_only=False",),
        ("canary-*",),
        "code-executed",
        UNPICKLES + " (weights_only=False is the full unpickler; the seeds warn about it)",
    ),
    SafetyFinding(
        ("tensorflow",),
        ("keras",),
        ("*safe_mode=False",),
        ("canary-lambda-layer",),
        "code-executed",
        "safe_mode=False deserializes the Lambda's Python bytecode and rebuilding the model runs it",
    ),
    SafetyFinding(
        ("numpy",),
        ("npy",),
        ("np.load *",),
        ("allocation-bomb",),
        "memory-blowup",
        "np.load trusts the header's shape and tries to allocate 4 TiB before reading any data; "
        "serbench's npy path checks the declared size against the file first",
    ),
    SafetyFinding(
        ("numpy", "tensorflow"),
        ("npy-pickle",),
        ("serbench trusted",),
        ("allocation-bomb",),
        "memory-blowup",
        "the trusted path is plain np.load, which trusts the header's shape",
    ),
    SafetyFinding(
        ("mxnet",),
        ("mx-ndarray",),
        ("*",),
        ("flipped-header-byte",),
        "memory-blowup",
        "MXNet trusts the shape in the file's array header; one flipped byte asks for a huge "
        "allocation (std::bad_alloc), contained here by the address-space cap",
    ),
    SafetyFinding(("numpy",), ("npy",), ("*",), ("flipped-data-byte",), "silent-wrong-data", NO_CHECKSUM),
    SafetyFinding(
        ("numpy", "torch", "tensorflow", "mxnet"),
        ("safetensors",),
        ("*",),
        ("flipped-data-byte",),
        "silent-wrong-data",
        NO_CHECKSUM + " (safetensors validates the header, not the data)",
    ),
    SafetyFinding(
        ("torch",),
        ("torch",),
        ("*",),
        ("flipped-data-byte",),
        "silent-wrong-data",
        "the zip records carry CRC-32s, but torch.load does not check them",
    ),
    SafetyFinding(
        ("tensorflow",),
        ("keras-h5",),
        ("*",),
        ("flipped-data-byte",),
        "silent-wrong-data",
        "HDF5 datasets are stored without checksums by default (no fletcher32 filter)",
    ),
    SafetyFinding(("mxnet",), ("gluon-params",), ("*",), ("flipped-data-byte",), "silent-wrong-data", NO_CHECKSUM),
    SafetyFinding(
        ("torch",),
        ("torch",),
        ("*",),
        ("flipped-header-byte",),
        "loaded-exact",
        "the flipped byte is in a zip local-file header, which torch's reader skips in favour of the central directory",
    ),
    SafetyFinding(
        ("tensorflow",),
        ("keras-h5",),
        ("*",),
        ("flipped-header-byte",),
        "loaded-exact",
        "the flipped byte lands in HDF5 free space or padding that the reader never uses",
    ),
    SafetyFinding(
        ("numpy", "torch", "tensorflow", "mxnet"),
        ("npy", "npz", "torch", "tf-checkpoint", "keras-h5", "keras", "mx-ndarray", "gluon-params"),
        ("*",),
        ("garbage-appended",),
        "loaded-exact",
        TRAILING,
    ),
    SafetyFinding(
        ("numpy", "tensorflow"),
        ("npy-pickle",),
        ("serbench trusted",),
        ("garbage-appended",),
        "loaded-exact",
        TRAILING + " (untrusted, serbench refuses the format outright)",
    ),
)


def expected_outcome(framework: str, fmt: str, mode: str, name: str, group: str) -> tuple[str, str]:
    """(outcome, reason) the suite expects for one load."""
    for finding in SAFETY_FINDINGS:
        if finding.matches(framework, fmt, mode, name):
            return finding.outcome, finding.reason
    return DEFAULT_BY_GROUP[group], f"default for {group} inputs"
