"""TensorFlow (Keras 3) adapter: d2l's `np.save` of TF tensors (pickled), `tf.train.Checkpoint`,
Keras 3 `.weights.h5` for the MLP, and safetensors through `safetensors.tensorflow`.

A checkpoint is saved as a directory holding `ckpt.index` and `ckpt.data-*`, so it can be written
atomically. It is loaded without a template, from the checkpoint's own object graph: the graph
keeps child names in order but not whether a node was a list or a dict.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files
from frameworks.base import Adapter, FormatSpec, check_mlp_state, safetensors_spec
from frameworks.numpy_adapter import load_npy_pickle, save_npy_pickle
from frameworks.trees import map_tree

ALL_KINDS = frozenset({"tensor", "list", "dict", "nested", "mlp"})
VARIABLE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"

NPY_PICKLE = FormatSpec(
    "npy-pickle",
    ALL_KINDS,
    "d2l's recipe, np.save(allow_pickle=True) of TF tensors: containers become one array or a pickle",
    "the .npy magic b'\\x93NUMPY' (np.load also reads .npz)",
    files.is_npy_or_npz,
    executes_code=True,
    suffix=".npy",
)
TF_CHECKPOINT = FormatSpec(
    "tf-checkpoint",
    ALL_KINDS | {"checkpoint"},
    "tf.train.Checkpoint: variables by object-graph path, in a directory (ckpt.index, ckpt.data-*)",
    "a directory holding a TensorFlow table ckpt.index",
    files.is_tf_checkpoint,
    suffix=".ckpt",
)
KERAS_H5 = FormatSpec(
    "keras-h5",
    frozenset({"mlp"}),
    "Keras 3 model.save_weights: an HDF5 file named *.weights.h5 holding a model's weights",
    "the HDF5 signature",
    files.is_hdf5,
    suffix=".weights.h5",
)
SAFETENSORS = safetensors_spec()


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


class TensorFlowAdapter(Adapter):
    name = "tensorflow"
    specs = (NPY_PICKLE, TF_CHECKPOINT, KERAS_H5, SAFETENSORS)
    thread_variables = (*Adapter.thread_variables, "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")

    def __init__(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras
        import safetensors.tensorflow
        import tensorflow as tf
        from tensorflow.core.protobuf import trackable_object_graph_pb2

        self.tf = tf
        self.keras = keras
        self._safetensors = safetensors.tensorflow
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

    def _tf_device(self, device: str) -> Any:
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

    def _on_device(self, tree: Any, device: str) -> Any:
        with self._tf_device(device):
            return map_tree(tree, lambda leaf: self.tf.identity(self.tf.convert_to_tensor(leaf)))

    def _save(self, tree: Any, path: Path, format: str) -> None:
        if format == "npy-pickle":
            save_npy_pickle(tree, path)
        elif format == "tf-checkpoint":
            path.mkdir()
            variables = map_tree(tree, self.tf.Variable)
            self.tf.train.Checkpoint(tree=variables).write(str(path / "ckpt"))
        else:
            self._safetensors.save_file(dict(tree), str(path))

    def _load(self, path: Path, format: str, device: str) -> Any:
        if format == "npy-pickle":
            return self._on_device(load_npy_pickle(path), device)
        if format == "tf-checkpoint":
            return self._on_device(self._read_checkpoint_tree(path), device)
        with self._tf_device(device):
            return self._safetensors.load_file(str(path))

    def _read_checkpoint_tree(self, path: Path) -> Any:
        reader = self.tf.train.load_checkpoint(str(path / "ckpt"))
        graph = self._object_graph()
        graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))

        def rebuild(node_id: int) -> Any:
            node = graph.nodes[node_id]
            for attribute in node.attributes:
                if attribute.checkpoint_key.endswith(VARIABLE_SUFFIX):
                    return reader.get_tensor(attribute.checkpoint_key)
            return {child.local_name: rebuild(child.node_id) for child in node.children}

        root = graph.nodes[0]
        (tree_node,) = [child.node_id for child in root.children if child.local_name == "tree"]
        return rebuild(tree_node)

    # The d2l MLP as a Keras 3 model ---------------------------------------------------------
    def new_mlp(self, params: dict[str, np.ndarray]) -> Any:
        model = self._mlp()
        model(np.zeros((1, 20), np.float32))
        self.set_mlp_state(model, params)
        return model

    def mlp_state(self, model: Any) -> dict[str, np.ndarray]:
        return {
            "hidden.weight": np.ascontiguousarray(model.hidden.kernel.numpy().T),
            "hidden.bias": model.hidden.bias.numpy(),
            "output.weight": np.ascontiguousarray(model.out.kernel.numpy().T),
            "output.bias": model.out.bias.numpy(),
        }

    def set_mlp_state(self, model: Any, params: dict[str, np.ndarray]) -> None:
        check_mlp_state(params)
        model.hidden.kernel.assign(params["hidden.weight"].T)
        model.hidden.bias.assign(params["hidden.bias"])
        model.out.kernel.assign(params["output.weight"].T)
        model.out.bias.assign(params["output.bias"])

    def mlp_forward(self, model: Any, inputs: np.ndarray) -> np.ndarray:
        return model(inputs, training=False).numpy()

    def _save_mlp(self, model: Any, path: Path, format: str) -> None:
        if format == "keras-h5":
            model.save_weights(str(path))
        elif format == "tf-checkpoint":
            path.mkdir()
            self.tf.train.Checkpoint(model=model).write(str(path / "ckpt"))
        else:
            super()._save_mlp(model, path, format)

    def _load_mlp(self, path: Path, format: str, clone: Any) -> None:
        if format == "keras-h5":
            clone.load_weights(str(path))
        elif format == "tf-checkpoint":
            self.tf.train.Checkpoint(model=clone).read(str(path / "ckpt")).assert_existing_objects_matched()
        else:
            super()._load_mlp(path, format, clone)

    def save_mlp(self, model: Any, path: str | Path, format: str) -> None:
        if format == "keras-h5" and not str(path).endswith(".weights.h5"):
            raise ValueError(
                f"Keras 3 save_weights needs a file name ending in '.weights.h5', got {str(path)!r} "
                f"(d2l's 'mlp.params' fails for this reason); rename the target"
            )
        super().save_mlp(model, path, format)
