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
        ("mxnet",),
        ("mx-ndarray",),
        ("npx.load",),
        ("flipped-header-byte",),
        "memory-blowup",
        "MXNet trusts the shape in the file's array header; one flipped byte asks for a huge "
        "allocation (std::bad_alloc), contained here by the address-space cap; serbench's header check refuses it",
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
    SafetyFinding(
        ("numpy", "torch", "tensorflow", "mxnet"),
        ("npy", "npz", "safetensors", "torch", "keras-h5", "keras", "mx-ndarray", "gluon-params"),
        ("np.load *", "safetensors.*", "torch.load *", "model.load_weights", "keras.saving.*", "npx.load", "Block.*"),
        ("fifo",),
        "hang",
        "the framework's loader opens whatever path it is given; a FIFO blocks the open (or the read) until a writer "
        "comes, which may be never. serbench checks for a regular file first",
    ),
    SafetyFinding(
        ("numpy",),
        ("npz",),
        ("np.load *",),
        ("member-declares-2^40",),
        "memory-blowup",
        "np.load trusts each member's .npy header and allocates its declared 4 TiB before reading; serbench compares "
        "the declared size with the member's size first",
    ),
    SafetyFinding(
        ("numpy",),
        ("npz",),
        ("np.load *",),
        ("non-npy-member",),
        "silent-wrong-data",
        "NpzFile returns a member that is not an .npy as raw bytes, as if it were an array",
    ),
    SafetyFinding(
        ("numpy",),
        ("npz",),
        ("np.load *",),
        ("deflate-bomb-2GiB",),
        "silent-wrong-data",
        "np.load inflates a 2 MB member to 2 GiB with no limit (past the memory cap this is a blow-up); serbench "
        "checks the declared uncompressed sizes against its load budget first",
    ),
    SafetyFinding(
        ("torch",),
        ("torch",),
        ("torch.load *",),
        ("sparse-out-of-bounds",),
        "silent-wrong-data",
        "torch.load(weights_only=True) accepts a sparse COO tensor whose indices lie outside its size, unchecked "
        "(to_dense returned here without an error; used with dense tensors such a tensor can write out of bounds). "
        "serbench refuses the sparse rebuild function in the pickle",
    ),
    SafetyFinding(
        ("torch",),
        ("torch",),
        ("torch.load *",),
        ("pickle-bytearray-8GiB",),
        "memory-blowup",
        "torch's weights_only allowlist includes builtins.bytearray, so a 39-byte pickle asks for 8 GiB; serbench "
        "admits only the globals a state_dict needs",
    ),
    SafetyFinding(
        ("tensorflow",),
        ("keras-h5",),
        ("model.load_weights",),
        ("int64-dataset",),
        "silent-wrong-data",
        "Keras assigns an int64 dataset to a float32 variable, casting the values; serbench requires float32",
    ),
    SafetyFinding(
        ("mxnet",),
        ("mx-ndarray", "gluon-params"),
        ("npx.load", "Block.load_parameters"),
        ("count-2^40",),
        "memory-blowup",
        "MXNet reserves space for the array count the file declares before reading any array (std::bad_alloc)",
    ),
    SafetyFinding(
        ("mxnet",),
        ("mx-ndarray",),
        ("npx.load",),
        ("dims-wrap",),
        "silent-wrong-data",
        "MXNet multiplies the declared dims in 64-bit arithmetic: 2^62 x 4 wraps to 0 elements and the array loads "
        "empty; serbench multiplies without overflow and compares with the bytes that follow",
    ),
)


def expected_outcome(framework: str, fmt: str, mode: str, name: str, group: str) -> tuple[str, str]:
    """(outcome, reason) the suite expects for one load."""
    for finding in SAFETY_FINDINGS:
        if finding.matches(framework, fmt, mode, name):
            return finding.outcome, finding.reason
    return DEFAULT_BY_GROUP[group], f"default for {group} inputs"
