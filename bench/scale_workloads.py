"""The checkpoints of `serbench run --scale`: state dicts with the shapes of real language models, and the
synthetic ones of the scaling sweep, built once in NumPy (seeded) and written by a framework's recipe.

LLM shapes follow the models' published configurations, with Hugging Face's tensor names and order
(`model.embed_tokens.weight`, then per layer the attention projections, the MLP and two RMSNorms, then
`model.norm.weight` and, where embeddings are not tied, `lm_head.weight`). Values are bfloat16 from a
normal(0, 0.02) draw, as an initialized model's are: real numbers, no NaN, so a bit-exact check means
something. A checkpoint is written once per workload and format under the data directory with a manifest
(every tensor's dtype, shape and CRC-32) that the loaders are checked against, and reused by later runs.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files, stored
from frameworks.base import SEED

MANIFEST = "serbench-manifest.json"
LAYOUT_VERSION = 1
"""Bump when the generated values or the layout change: cached checkpoints are then rebuilt."""


@dataclass(frozen=True)
class Transformer:
    """A Llama-style decoder's configuration (the fields of its config.json that fix the state dict)."""

    name: str
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool
    max_shard_bytes: int
    """How the checkpoint is sharded (save_pretrained's max_shard_size)."""
    source: str

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        head_dim = self.hidden // self.heads
        kv = self.kv_heads * head_dim
        shapes = [("model.embed_tokens.weight", (self.vocab, self.hidden))]
        for layer in range(self.layers):
            prefix = f"model.layers.{layer}."
            shapes += [
                (prefix + "self_attn.q_proj.weight", (self.hidden, self.hidden)),
                (prefix + "self_attn.k_proj.weight", (kv, self.hidden)),
                (prefix + "self_attn.v_proj.weight", (kv, self.hidden)),
                (prefix + "self_attn.o_proj.weight", (self.hidden, self.hidden)),
                (prefix + "mlp.gate_proj.weight", (self.intermediate, self.hidden)),
                (prefix + "mlp.up_proj.weight", (self.intermediate, self.hidden)),
                (prefix + "mlp.down_proj.weight", (self.hidden, self.intermediate)),
                (prefix + "input_layernorm.weight", (self.hidden,)),
                (prefix + "post_attention_layernorm.weight", (self.hidden,)),
            ]
        shapes.append(("model.norm.weight", (self.hidden,)))
        if not self.tied_embeddings:
            shapes.append(("lm_head.weight", (self.vocab, self.hidden)))
        return shapes

    @property
    def parameters(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.shapes())

    @property
    def payload(self) -> int:
        return 2 * self.parameters


GB = 1000**3
TRANSFORMERS = {
    "llama-1b": Transformer(
        "llama-1b", 2048, 16, 8192, 32, 8, 128_256, True, 1 * GB, "Llama 3.2 1B config.json (tied embeddings)"
    ),
    "llama-8b": Transformer("llama-8b", 4096, 32, 14_336, 32, 8, 128_256, False, 5 * GB, "Llama 3.1 8B config.json"),
    "llama-tiny": Transformer("llama-tiny", 64, 2, 256, 4, 2, 512, False, 160_000, "a test-sized Llama (not a model)"),
}
"""1B: 1.24 billion parameters, 2.47 GB in bfloat16, written as one file and as 3 shards of at most 1 GB
(`save_pretrained(max_shard_size="1GB")`; the Hub's copy is one file). 8B: 16.1 GB, 4 shards of at most
5 GB as on the Hub; for machines with the memory."""


@dataclass(frozen=True)
class Synthetic:
    """A sweep point: `tensors` equal bfloat16 tensors of `payload` bytes in all, in `files` shards."""

    payload: int
    tensors: int
    files: int

    @property
    def name(self) -> str:
        return f"sweep-{self.payload >> 10}KiB-{self.tensors}t-{self.files}f"

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        elements = self.payload // 2 // self.tensors
        width = 256 if elements % 256 == 0 else 1
        return [(f"layer.{index}.weight", (elements // width, width)) for index in range(self.tensors)]

    @property
    def max_shard_bytes(self) -> int:
        return -(-self.payload // self.files)


def values(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Seeded bfloat16 values of a normal(0, 0.02) draw for the tensor `name` (rounded toward zero)."""
    import ml_dtypes  # not in the MXNet environment, which imports this module only to collect tests

    generator = np.random.default_rng([SEED, 7_000, zlib.crc32(name.encode())])
    drawn = generator.standard_normal(int(np.prod(shape)), dtype=np.float32)
    drawn *= np.float32(0.02)
    bits = (drawn.view(np.uint32) >> 16).astype(np.uint16)
    return bits.view(ml_dtypes.bfloat16).reshape(shape)


def crc32(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _arrays(shapes: list[tuple[str, tuple[int, ...]]]) -> Iterator[tuple[str, np.ndarray]]:
    for name, shape in shapes:
        yield name, values(name, shape)


MANIFEST_SCHEMA = stored.Object(
    required={
        "key": stored.MapOf(stored.ANY),
        "workload": str,
        "format": str,
        "checkpoint": str,
        "files": stored.ListOf(str),
        "payload_bytes": int,
        "tensors": stored.MapOf(stored.Object(required={"dtype": str, "shape": stored.ListOf(int), "crc32": int})),
    }
)
MANIFEST_CAP = 64 << 20


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A checkpoint's manifest, checked: a regular file within its cap, of the manifest's schema, naming only
    files in its own directory (a manifest cannot send a loader elsewhere)."""
    manifest = stored.read_json(path, what="scale checkpoint manifest", schema=MANIFEST_SCHEMA, cap=MANIFEST_CAP)
    directory = Path(path).parent
    for named in [manifest["checkpoint"], *manifest["files"]]:
        if Path(named).parent != directory or Path(named).name in ("", ".", ".."):  # DIR/.. has DIR as its parent
            raise stored.StoredFileError(f"{path} names {named!r}, which is not in its own directory {directory}")
    return manifest


def build(recipe: Any, workload: Transformer | Synthetic, format_name: str, data: Path) -> dict[str, Any]:
    """The checkpoint of `workload` in `format_name` under `data`, written by the framework's `recipe` unless an
    up-to-date one is there; returns its manifest (`checkpoint` is the path a loader is given).

    The checkpoint's directory is written whole or not at all (staged beside it, renamed into place, with
    serbench's marker), and an existing one is replaced only if serbench made it: a directory of the same name
    that holds your files is refused, never removed."""
    directory = data / f"{workload.name}-{format_name}"
    key = {"workload": asdict(workload), "format": format_name, "layout": LAYOUT_VERSION}
    if files.is_marked(directory):
        try:
            manifest = read_manifest(directory / MANIFEST)
        except stored.StoredFileError:
            manifest = {}  # damaged or from another layout: rebuilt below
        if manifest.get("key") == key and all(files.is_regular(Path(name)) for name in manifest["files"]):
            return manifest
    arrays = dict(_arrays(workload.shapes()))
    with files.atomic_path(directory) as staging:
        staging.mkdir()
        files.mark(staging)  # so that a build killed half way is provably serbench's to remove
        written = recipe.save_checkpoint(arrays, staging, format_name, workload.max_shard_bytes)
        manifest = {
            "key": key,
            "workload": workload.name,
            "format": format_name,
            "checkpoint": str(directory / Path(written).name),
            "files": sorted(
                str(directory / path.name) for path in staging.iterdir() if path.name != files.SERBENCH_MARKER
            ),
            "payload_bytes": sum(array.nbytes for array in arrays.values()),
            "tensors": {
                name: {"dtype": array.dtype.name, "shape": list(array.shape), "crc32": crc32(array)}
                for name, array in arrays.items()
            },
        }
        (staging / MANIFEST).write_bytes(json.dumps(manifest).encode())
    return manifest
