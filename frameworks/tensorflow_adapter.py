"""TensorFlow (Keras 3) adapter: d2l's `np.save` of TF tensors (pickled), `tf.train.Checkpoint`,
Keras 3 `.weights.h5` for the MLP, and safetensors through `safetensors.tensorflow`.

A checkpoint is saved as a directory holding `ckpt.index` and `ckpt.data-*`, so it can be written
atomically. It is loaded without a template, from the checkpoint's own object graph: the graph
keeps child names in order but not whether a node was a list or a dict.

A user's checkpoint directory (`read_arrays`) may hold any object graph under any prefix:
`tf.train.Checkpoint(model=..., optimizer=...).save()` writes `ckpt-1.index`, `ckpt-1.data-*` and a
`checkpoint` state file naming the latest prefix; `.write()` one prefix with the user's root names. It is
read as its variables, named by their checkpoint keys (`model/layer_with_weights-0/kernel/.ATTRIBUTES/
VARIABLE_VALUE`, as `tf.train.list_variables` gives them), through `tf.train.load_checkpoint`, after the
`.index` is checked to be a TensorFlow table and the variables' declared sizes against the load budget.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files, forgeries, gate, quiet, reading, stored
from frameworks.base import Adapter, FormatSpec, check_mlp_state, safetensors_load_file, safetensors_spec
from frameworks.errors import FormatMismatchError
from frameworks.findings import (
    NPY_BFLOAT16,
    NPY_PICKLE_STACKED_LIST,
    SAFETENSORS_KEY_ORDER,
    TRAILING_IGNORED,
    Expectation,
    Finding,
    SafetyFinding,
    fifo_blocks,
)
from frameworks.numpy_adapter import load_npy_pickle, npy_pickle_spec
from frameworks.trees import map_tree

ALL_KINDS = frozenset({"tensor", "list", "dict", "nested", "mlp"})
VARIABLE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"

KERAS_MLP_SHAPES = {(20, 256), (256,), (256, 10), (10,)}
"""The Keras MLP's variables: kernels in (in, out) layout, then biases."""


@contextlib.contextmanager
def _weights_file(path: Path) -> Iterator[Any]:
    """The HDF5 file open for reading; h5py's OSError (not HDF5, damaged) as FormatMismatchError."""
    import h5py

    try:
        with h5py.File(path, "r", rdcc_nbytes=0) as handle:  # no chunk cache: 10,000 open datasets kept 11 GiB
            yield handle
    except OSError as error:
        raise FormatMismatchError(f"{path} is not a valid 'keras-h5' file: {error}") from None


FILE_SLACK_BYTES = 64 << 20
"""How far the chunks a read of a whole weights file decompresses may exceed the data it holds."""
CHUNK_SLACK_BYTES = 1 << 20
"""How far a chunked dataset's chunk may exceed its data (h5py's own chunk guesses for small data stay under it)."""


def _datasets(handle: Any, path: Path) -> list[tuple[str, Any]]:
    """Every dataset of an open weights file, in visiting order; more than gate.MAX_MEMBERS objects is refused,
    and so is a dataset whose bytes are not in the file: HDF5's external storage and virtual datasets read
    other files (a forged weights file read a mode-0600 file of the user's, or blocked on a FIFO)."""
    import h5py

    found: list[tuple[str, Any]] = []

    def visit(name: str, item: object) -> None:
        gate.check_count(path, "keras-h5", len(found), "datasets")
        if isinstance(item, h5py.Dataset):
            if item.external or item.is_virtual:
                where = "a virtual dataset's sources" if item.is_virtual else f"external file {item.external[0][0]!r}"
                raise FormatMismatchError(
                    f"refusing {path} as 'keras-h5': its dataset {name!r} stores its bytes in {where}, outside the "
                    "file (Keras writes every weight into the file itself)"
                )
            if item.chunks is not None:  # a chunk is decompressed whole: one of 1 GiB held a 1-element dataset
                chunk_bytes = int(np.prod(item.chunks, dtype=object)) * item.dtype.itemsize
                data_bytes = int(np.prod(item.shape, dtype=object)) * item.dtype.itemsize
                if chunk_bytes > max(data_bytes, CHUNK_SLACK_BYTES):
                    raise FormatMismatchError(
                        f"refusing {path} as 'keras-h5': its dataset {name!r} of {data_bytes:,} bytes is stored in "
                        f"chunks of {chunk_bytes:,} bytes, each decompressed whole (a decompression bomb; Keras "
                        "writes its weights contiguous)"
                    )
            found.append((name, item))

    handle.visititems(visit)
    return found


def _read_bytes(item: Any) -> int:
    """The bytes a read of the dataset goes through: its data, or for chunked storage every chunk that covers it,
    each decompressed whole (100,000 tiny datasets in 1 MiB chunks of zeros are 100 GB from a 100 MB file)."""
    if item.chunks is None:
        return int(np.prod(item.shape, dtype=object)) * item.dtype.itemsize
    covering = [-(-extent // chunk) for extent, chunk in zip(item.shape, item.chunks, strict=True)]
    count = int(np.prod(covering, dtype=object))
    return count * int(np.prod(item.chunks, dtype=object)) * item.dtype.itemsize


def check_keras_weights(path: Path) -> None:
    """A `.weights.h5` of the MLP holds four float32 datasets of the MLP's shapes and nothing larger:
    checked with h5py before Keras reads (a forged file declared huge dims with a fill value, or held
    int64 or string datasets that Keras accepted)."""
    with _weights_file(path) as handle:
        datasets = [(name, str(item.dtype), tuple(item.shape)) for name, item in _datasets(handle, path)]
    wrong = [entry for entry in datasets if entry[1] != "float32" or entry[2] not in KERAS_MLP_SHAPES]
    if wrong or len(datasets) != len(KERAS_MLP_SHAPES):
        raise FormatMismatchError(
            f"{path} does not hold the MLP's weights: expected 4 float32 datasets of shapes "
            f"{sorted(KERAS_MLP_SHAPES)}, found {len(datasets)}" + (f", among them {wrong[:3]}" if wrong else "")
        )


def check_checkpoint_directory(path: Path) -> None:
    """The directory holds `ckpt.index` and its `ckpt.data-*` shards only: a `checkpoint` state file or
    another prefix beside them could redirect TensorFlow's reader to another checkpoint."""
    extra = sorted(
        entry.name
        for entry in path.iterdir()
        if entry.name not in ("ckpt.index", files.SERBENCH_MARKER) and not entry.name.startswith("ckpt.data-")
    )
    if extra:
        raise FormatMismatchError(
            f"{path} is not a checkpoint as serbench writes it: besides ckpt.index and ckpt.data-* it holds {extra[:5]}"
            f" (a 'checkpoint' state file or another prefix can redirect the read to other files)"
        )


STATE_FILE = "checkpoint"
"""The text file `tf.train.CheckpointManager` and `Checkpoint.save` keep beside their checkpoints."""
LATEST = re.compile(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"\s*$', re.MULTILINE)


def is_tf_checkpoint_directory(path: Path) -> bool:
    """serbench's layout (`ckpt.index`), or any directory holding a TensorFlow checkpoint under some prefix."""
    return files.is_tf_checkpoint(path) or files.is_tf_object_checkpoint(path)


def checkpoint_prefix(path: Path) -> tuple[str, str]:
    """The prefix of the checkpoint a directory holds, and why that one: the one its `checkpoint` state file
    names (the latest save), else its only one. A state file that names anything but a prefix of this
    directory is refused: it could send TensorFlow's reader to another checkpoint."""
    prefixes = files.tf_checkpoint_prefixes(path)
    state = path / STATE_FILE
    if files.is_regular(state):
        text = stored.read_bytes(state, cap=1 << 20, what="TensorFlow checkpoint state").decode("utf-8", "replace")
        if (found := LATEST.search(text)) is not None:
            named = Path(found.group(1))
            name = named.name if named.is_absolute() and named.parent.resolve() == path.resolve() else str(named)
            if name not in prefixes:
                raise FormatMismatchError(
                    f"{path}: its `checkpoint` file names {str(named)!r}, which is not a checkpoint in the directory "
                    f"(it holds {', '.join(prefixes) or 'none'}); a state file may only name one of them"
                )
            others = f" (of {len(prefixes)}: {', '.join(prefixes)})" if len(prefixes) > 1 else ""
            return name, f"prefix {name}, the latest, as its `checkpoint` file names it{others}"
    if len(prefixes) == 1:
        return prefixes[0], f"prefix {prefixes[0]}"
    raise FormatMismatchError(
        f"{path} holds {len(prefixes)} TensorFlow checkpoints ({', '.join(prefixes[:5])}) and no `checkpoint` file "
        "naming the latest: give a directory holding one of them"
    )


def read_checkpoint_arrays(adapter: TensorFlowAdapter, path: Path) -> Any:
    """A user's checkpoint directory (see the module docstring) as NumPy: serbench's own (one root child `tree`)
    as its tree, any other object graph as {checkpoint key: array}. A variable that is not numeric (a string)
    is kept as its dtype's name, which `serbench bench` names and drops; the object graph itself is left out."""
    prefix, why = checkpoint_prefix(path)
    tf = adapter.tf
    try:
        reader = tf.train.load_checkpoint(str(path / prefix))
        dtypes, shapes = reader.get_variable_to_dtype_map(), reader.get_variable_to_shape_map()
        graph = adapter._object_graph()
        if OBJECT_GRAPH_KEY in dtypes:
            graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))
    except (tf.errors.OpError, ValueError) as error:
        raise FormatMismatchError(
            f"{path} is not a valid 'tf-checkpoint': {str(error).splitlines()[0][:300]}"
        ) from None
    if prefix == "ckpt" and graph.nodes and [child.local_name for child in graph.nodes[0].children] == ["tree"]:
        return adapter.to_numpy(adapter.read_checkpoint_tree(path))
    names = sorted(name for name in dtypes if name != OBJECT_GRAPH_KEY)
    gate.check_count(path, "tf-checkpoint", len(names), "variables")
    numeric = {
        name for name in names if dtypes[name].is_floating or dtypes[name].is_integer or dtypes[name].is_bool
    } | {name for name in names if dtypes[name].is_complex}
    declared = sum(math.prod(shapes[name]) * dtypes[name].size for name in numeric)
    gate.check_declared(path, "tf-checkpoint", declared, "its variables")
    reading.note(why)
    try:
        return {
            name: np.asarray(reader.get_tensor(name)) if name in numeric else f"{dtypes[name].name} variable"
            for name in names
        }
    except tf.errors.OpError as error:
        raise FormatMismatchError(f"{path} could not be read: {str(error).splitlines()[0][:300]}") from None


def _load_npy_pickle(adapter: TensorFlowAdapter, path: Path, device: str) -> Any:
    return adapter.on_device(load_npy_pickle(path), device)


def _save_checkpoint(adapter: TensorFlowAdapter, tree: Any, path: Path) -> None:
    path.mkdir()
    adapter.tf.train.Checkpoint(tree=map_tree(tree, adapter.tf.Variable)).write(str(path / "ckpt"))


def _load_checkpoint(adapter: TensorFlowAdapter, path: Path, device: str) -> Any:
    return adapter.on_device(adapter.read_checkpoint_tree(path), device)


def _save_mlp_checkpoint(adapter: TensorFlowAdapter, model: Any, path: Path) -> None:
    path.mkdir()
    adapter.tf.train.Checkpoint(model=model).write(str(path / "ckpt"))


def _load_mlp_checkpoint(adapter: TensorFlowAdapter, path: Path, clone: Any) -> None:
    adapter.check_mlp_checkpoint(path)
    adapter.tf.train.Checkpoint(model=clone).read(str(path / "ckpt")).assert_existing_objects_matched()


def _save_weights(adapter: TensorFlowAdapter, model: Any, path: Path) -> None:
    model.save_weights(str(path))


def read_weights_h5(adapter: TensorFlowAdapter, path: Path) -> dict[str, np.ndarray]:
    """Any Keras `.weights.h5` (a user's model, not only the MLP) as {HDF5 path: array}, in file order
    (Keras 3 names them `layers/<layer>/vars/<i>`). Every dataset must be numeric, and what they declare
    together within the load budget, before any is read (a dataset can declare terabytes of fill value)."""
    with _weights_file(path) as handle:
        found = _datasets(handle, path)
        odd = [f"{name} ({item.dtype})" for name, item in found if item.dtype.kind not in "fiub"]
        if odd:
            raise FormatMismatchError(f"{path} holds datasets that are not numeric tensors: {', '.join(odd[:5])}")
        read = sum(_read_bytes(item) for _, item in found)
        data = sum(int(np.prod(item.shape, dtype=object)) * item.dtype.itemsize for _, item in found)
        if read > data + FILE_SLACK_BYTES:  # a (1, N) dataset in (2^18, 1) chunks decompresses N MiB for 4N bytes
            raise FormatMismatchError(
                f"refusing {path} as 'keras-h5': reading its {data:,} bytes of weights would decompress {read:,} bytes "
                "of chunks (a decompression bomb; Keras writes its weights contiguous)"
            )
        gate.check_declared(path, "keras-h5", read, "its datasets, chunk by chunk")
        return {name: np.asarray(item[()]) for name, item in found}


def _load_weights(adapter: TensorFlowAdapter, path: Path, clone: Any) -> None:
    clone.load_weights(str(path))


def _save_safetensors(adapter: TensorFlowAdapter, tree: dict[str, Any], path: Path) -> None:
    adapter.safetensors.save_file(dict(tree), str(path))


def _load_safetensors(adapter: TensorFlowAdapter, path: Path, device: str) -> dict[str, Any]:
    with adapter.tf_device(device):
        return adapter.safetensors.load_file(str(path))


def _keras_load_weights(adapter: TensorFlowAdapter, path: Path) -> Any:
    clone = adapter.blank_mlp()
    clone.load_weights(str(path))
    return adapter.mlp_state(clone)


def _output_bias(handle: Any, path: Path) -> str:
    """The name of the MLP's (10,) bias dataset in a Keras weights file."""
    return next(name for name, item in _datasets(handle, path) if item.shape == (10,))


def _keras_h5_forgeries(adapter: TensorFlowAdapter, directory: Path, valid: Path, reference: Any) -> list[Any]:
    """The valid weights with the output bias replaced by an int64 dataset, or by a (2^20, 2^20) dataset
    that stores only its fill value (4 TiB once read)."""
    import h5py

    out = []
    for name in ("int64-dataset", "huge-dims-fillvalue"):
        path = directory / f"{name}.weights.h5"
        path.write_bytes(valid.read_bytes())
        with h5py.File(path, "a") as handle:
            target = _output_bias(handle, path)
            del handle[target]
            if name == "int64-dataset":
                handle.create_dataset(target, data=np.arange(10, dtype=np.int64))
            else:
                handle.create_dataset(target, shape=(1 << 20, 1 << 20), dtype="f4", fillvalue=1.0, chunks=(1, 1024))
        out.append(forgeries.Forged(name, path))
    return out


def _lambda_layer_canary(adapter: TensorFlowAdapter, path: Path, source: str, reference: Any) -> str:
    """A whole model whose first layer is a Lambda: Keras stores its code, which loading may run."""
    front = adapter.keras.layers.Lambda(eval(source))  # the source is serbench's own canary, never input
    adapter.whole_model(reference, front).save(path)
    return "canary-lambda-layer"


def _save_whole_model(adapter: TensorFlowAdapter, model: Any, path: Path) -> None:
    adapter.whole_model(adapter.mlp_state(model)).save(path)


def dense_state(hidden: Any, output: Any) -> dict[str, np.ndarray]:
    """The MLP's parameters from its two Keras Dense layers, in canonical names and (out, in) layout."""
    return {
        "hidden.weight": np.ascontiguousarray(hidden.kernel.numpy().T),
        "hidden.bias": hidden.bias.numpy(),
        "output.weight": np.ascontiguousarray(output.kernel.numpy().T),
        "output.bias": output.bias.numpy(),
    }


def _keras_load_model(safe_mode: bool) -> Any:
    def read(adapter: TensorFlowAdapter, path: Path) -> dict[str, np.ndarray]:
        model = adapter.keras.saving.load_model(path, safe_mode=safe_mode)
        return dense_state(model.get_layer("hidden"), model.get_layer("output"))

    return read


def _load_whole_model(adapter: TensorFlowAdapter, path: Path, clone: Any) -> None:
    adapter.set_mlp_state(clone, _keras_load_model(True)(adapter, path))


NPY_PICKLE = npy_pickle_spec(
    ALL_KINDS,
    "d2l's recipe, np.save(allow_pickle=True) of TF tensors: containers become one array or a pickle",
    _load_npy_pickle,
)
TF_CHECKPOINT = FormatSpec(
    "tf-checkpoint",
    ALL_KINDS | {"checkpoint"},
    "tf.train.Checkpoint: variables by object-graph path, in a directory (ckpt.index, ckpt.data-*); a user's "
    "checkpoint directory is read under any prefix and object graph",
    "a directory holding a TensorFlow table ckpt.index (or any PREFIX.index with its PREFIX.data-* files)",
    is_tf_checkpoint_directory,
    suffix=".ckpt",
    directory=True,
    validate=check_checkpoint_directory,
    save=_save_checkpoint,
    load=_load_checkpoint,
    save_mlp=_save_mlp_checkpoint,
    load_mlp=_load_mlp_checkpoint,
    read_arrays=read_checkpoint_arrays,
    safety_findings=(TRAILING_IGNORED,),
)
KERAS_H5 = FormatSpec(
    "keras-h5",
    frozenset({"mlp"}),
    "Keras 3 model.save_weights: an HDF5 file named *.weights.h5 holding a model's weights",
    "the HDF5 signature",
    files.is_hdf5,
    suffix=".weights.h5",
    uses=("h5py",),
    validate=check_keras_weights,
    save_mlp=_save_weights,
    load_mlp=_load_weights,
    read_arrays=read_weights_h5,
    framework_loaders={"model.load_weights": _keras_load_weights},
    forgeries=_keras_h5_forgeries,
    safety_findings=(
        SafetyFinding(
            ("*",),
            ("flipped-data-byte",),
            "silent-wrong-data",
            "HDF5 datasets are stored without checksums by default (no fletcher32 filter)",
        ),
        SafetyFinding(
            ("*",),
            ("flipped-header-byte",),
            "loaded-exact",
            "the flipped byte lands in HDF5 free space or padding that the reader never uses",
        ),
        TRAILING_IGNORED,
        *fifo_blocks(("model.load_weights",)),
        SafetyFinding(
            ("model.load_weights",),
            ("int64-dataset",),
            "silent-wrong-data",
            "Keras assigns an int64 dataset to a float32 variable, casting the values; serbench requires float32",
        ),
    ),
)
SAFETENSORS = safetensors_spec(
    _save_safetensors, _load_safetensors, framework_loaders=safetensors_load_file("tensorflow")
)
KERAS_MODEL = FormatSpec(
    "keras",
    frozenset({"mlp"}),
    "Keras 3 model.save: a zip of the model's config (which can name Lambda code) and its weights",
    "a zip archive holding config.json",
    lambda path: files.is_zip_with(path, "config.json"),
    suffix=".keras",
    save_mlp=_save_whole_model,
    load_mlp=_load_whole_model,
    framework_loaders={
        "keras.saving.load_model safe_mode=True": _keras_load_model(True),
        "keras.saving.load_model safe_mode=False": _keras_load_model(False),
    },
    code_canary=_lambda_layer_canary,
    safety_findings=(
        SafetyFinding(
            ("*safe_mode=False",),
            ("canary-lambda-layer",),
            "code-executed",
            "safe_mode=False deserializes the Lambda's Python bytecode and rebuilding the model runs it",
        ),
        TRAILING_IGNORED,
        *fifo_blocks(("keras.saving.*",)),
    ),
)
"""A whole Keras model: serbench does not offer it (it saves parameters, as d2l does), but users load such
files, so the safety matrix opens them with Keras's own loader under both settings of safe_mode."""


def _mlp_class(keras: Any) -> type:
    class MLP(keras.Model):
        """d2l 5.5: Flatten -> Dense(256, relu) -> Dense(10)."""

        def __init__(self) -> None:
            super().__init__()
            self.flatten = keras.layers.Flatten()
            self.hidden = keras.layers.Dense(256, activation="relu")
            self.out = keras.layers.Dense(10)

        def call(self, inputs: Any) -> Any:
            return self.out(self.hidden(self.flatten(inputs)))

    return MLP


FINDINGS = (
    Finding(
        ("npy-pickle",),
        ("dtype-bfloat16/tensor",),
        Expectation("error", (NPY_BFLOAT16, "TensorFlow cannot make a tensor of voids"), error="ValueError"),
    ),
    NPY_PICKLE_STACKED_LIST,
    Finding(
        ("safetensors",),
        ("shape-0d/dict", "keys-dotted"),
        Expectation(
            "error",
            "upstream: safetensors.tensorflow (0.8) fails on 0-d tensors: its _tf2np turns each tensor into NumPy "
            "with tensor.numpy(), which gives a NumPy scalar for a 0-d tensor, and safetensors.numpy then reads its "
            ".ctypes ('numpy.float32' object has no attribute 'ctypes')",
            error="AttributeError",
            signature="object has no attribute 'ctypes'",
        ),
    ),
    SAFETENSORS_KEY_ORDER,
    Finding(
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
        ("tf-checkpoint",),
        ("nested",),
        Expectation(
            "drift",
            "as for d2l-list: the object graph does not say a child was a list",
            ("root['history']: list -> dict with keys ['0', '1']",),
        ),
    ),
)
"""Where this adapter does not round-trip exactly, and why (see `frameworks.findings`)."""


class TensorFlowAdapter(Adapter):
    name = "tensorflow"
    specs = (NPY_PICKLE, TF_CHECKPOINT, KERAS_H5, SAFETENSORS)
    safety_specs = (KERAS_MODEL,)
    native_mlp_format = "keras-h5"
    gated_readers = ("read_checkpoint_tree",)
    packages = ("tensorflow", "keras", "safetensors", "h5py")
    findings = FINDINGS
    training_recipe = "frameworks.tensorflow_training:KerasTraining"
    thread_variables = (*Adapter.thread_variables, "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")

    def __init__(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        with quiet.native_stderr_filtered():  # TF 2.21's Abseil logs ignore TF_CPP_MIN_LOG_LEVEL at import
            import keras
            import safetensors.tensorflow
            import tensorflow as tf
            from tensorflow.core.protobuf import trackable_object_graph_pb2

        self.tf = tf
        self.keras = keras
        self.safetensors = safetensors.tensorflow
        self._object_graph = trackable_object_graph_pb2.TrackableObjectGraph
        self._mlp = _mlp_class(keras)

    def thread_settings(self) -> dict[str, object]:
        threading = self.tf.config.threading  # 0 means "the runtime's choice" (its TF_NUM_* variables)
        return {
            **super().thread_settings(),
            "tf intra_op_parallelism_threads": threading.get_intra_op_parallelism_threads(),
            "tf inter_op_parallelism_threads": threading.get_inter_op_parallelism_threads(),
        }

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if self.tf.config.list_physical_devices("GPU") else ("cpu",)

    def device_note(self) -> str:
        if not self.tf.test.is_built_with_cuda():
            return f"tensorflow {self.tf.__version__} is built without CUDA"
        return "tf.config.list_physical_devices('GPU') is empty"

    def reset_device_memory_peak(self, device: str) -> None:
        if device == "cuda":
            self.tf.config.experimental.reset_memory_stats("GPU:0")
            self._device_memory_base = self.tf.config.experimental.get_memory_info("GPU:0")["current"]

    def device_memory_peak(self, device: str) -> int | None:
        if device != "cuda":
            return None
        return self.tf.config.experimental.get_memory_info("GPU:0")["peak"] - getattr(self, "_device_memory_base", 0)

    def tf_device(self, device: str) -> Any:
        return self.tf.device("/GPU:0" if device == "cuda" else "/CPU:0")

    def device_of(self, tensor: Any) -> str:
        return "cuda" if "GPU" in getattr(tensor, "device", "") else "cpu"

    def tensor_from_numpy(self, array: np.ndarray) -> Any:
        return self.tf.constant(array)

    def ready(self, tensor: Any) -> np.ndarray | None:
        if "GPU" in getattr(tensor, "device", ""):
            self.tf.test.experimental.sync_devices()
            return None
        return self.tensor_to_numpy(tensor)

    def tensor_to_numpy(self, tensor: Any) -> np.ndarray:
        return tensor.numpy() if hasattr(tensor, "numpy") else np.asarray(tensor)

    def on_device(self, tree: Any, device: str) -> Any:
        with self.tf_device(device):
            return map_tree(tree, lambda leaf: self.tf.identity(self.tf.convert_to_tensor(leaf)))

    def read_checkpoint_tree(self, path: Path) -> Any:
        reader = self.tf.train.load_checkpoint(str(path / "ckpt"))
        graph = self._object_graph()
        graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))

        gate.check_count(path, "tf-checkpoint", len(graph.nodes), "object-graph nodes")
        seen: set[int] = set()

        def rebuild(node_id: int) -> Any:
            if node_id in seen or not 0 <= node_id < len(graph.nodes):
                raise FormatMismatchError(
                    f"{path} is not a tree checkpoint: its object graph reaches node {node_id} twice or out of range "
                    f"(a forged graph can make a reader walk exponentially many paths)"
                )
            seen.add(node_id)
            node = graph.nodes[node_id]
            for attribute in node.attributes:
                if attribute.checkpoint_key.endswith(VARIABLE_SUFFIX):
                    return reader.get_tensor(attribute.checkpoint_key)
            return {child.local_name: rebuild(child.node_id) for child in node.children}

        root = graph.nodes[0]
        trees = [child.node_id for child in root.children if child.local_name == "tree"]
        if len(trees) != 1:
            found = sorted(child.local_name for child in root.children)
            raise FormatMismatchError(
                f"{path} holds no tree of tensors (its root holds {found}): a checkpoint written by save_mlp or a "
                f"training recipe is restored into a model, with load_mlp or the recipe"
            )
        return rebuild(trees[0])

    def check_mlp_checkpoint(self, path: Path) -> None:
        """The checkpoint's variables are the MLP's: four float32 tensors of its shapes (TF would otherwise
        cast, or restore another checkpoint's values)."""
        reader = self.tf.train.load_checkpoint(str(path / "ckpt"))
        dtypes, shapes = reader.get_variable_to_dtype_map(), reader.get_variable_to_shape_map()
        found = [(str(dtypes[key].name), tuple(shapes[key])) for key in dtypes if key.endswith(VARIABLE_SUFFIX)]
        if sorted(found) != sorted(("float32", shape) for shape in KERAS_MLP_SHAPES):
            raise FormatMismatchError(
                f"{path} does not hold the MLP's float32 variables of shapes {sorted(KERAS_MLP_SHAPES)}; found {found}"
            )

    def whole_model(self, params: dict[str, np.ndarray], front: Any = None) -> Any:
        """The MLP as a functional Keras model (what `model.save('m.keras')` writes), with layer `front`
        (a Lambda, say) before it if given."""
        inputs = self.keras.Input((20,))
        hidden = self.keras.layers.Dense(256, activation="relu", name="hidden")
        output = self.keras.layers.Dense(10, name="output")
        model = self.keras.Model(inputs, output(hidden(inputs if front is None else front(inputs))))
        hidden.set_weights([params["hidden.weight"].T, params["hidden.bias"]])
        output.set_weights([params["output.weight"].T, params["output.bias"]])
        return model

    # The d2l MLP as a Keras 3 model ---------------------------------------------------------
    def new_mlp(self, params: dict[str, np.ndarray]) -> Any:
        model = self._mlp()
        model(np.zeros((1, 20), np.float32))
        self.set_mlp_state(model, params)
        return model

    def mlp_state(self, model: Any) -> dict[str, np.ndarray]:
        return dense_state(model.hidden, model.out)

    def set_mlp_state(self, model: Any, params: dict[str, np.ndarray]) -> None:
        check_mlp_state(params)
        model.hidden.kernel.assign(params["hidden.weight"].T)
        model.hidden.bias.assign(params["hidden.bias"])
        model.out.kernel.assign(params["output.weight"].T)
        model.out.bias.assign(params["output.bias"])

    def mlp_forward(self, model: Any, inputs: np.ndarray) -> np.ndarray:
        return model(inputs, training=False).numpy()

    def save_mlp(self, model: Any, path: str | Path, format: str) -> None:
        if format == "keras-h5" and not str(path).endswith(".weights.h5"):
            raise ValueError(
                f"Keras 3 save_weights needs a file name ending in '.weights.h5', got {str(path)!r} "
                f"(d2l's 'mlp.params' fails for this reason); rename the target"
            )
        super().save_mlp(model, path, format)
