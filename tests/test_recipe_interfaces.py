"""The recipe interfaces are declared and held: every training recipe is a complete `TrainingRecipe` and every
scale recipe a complete `ScaleRecipe`, checked from the class alone (its module imports no framework, so this
runs where the framework is missing too), and a recipe that is not one is refused when it is looked up.

Parametrized from the registry (`training.with_recipes`, `scale.with_scale_recipes`): a framework whose
adapter names a recipe is covered without editing this file.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import frameworks
from frameworks import recipes, scale, training
from frameworks.base import ShardLoader
from frameworks.errors import UnsafeTargetError, UnsupportedError
from frameworks.scale import ScaleRecipe
from frameworks.training import TrainingRecipe

HEAVY = ("torch", "tensorflow", "keras", "mxnet", "jax", "flax", "optax", "orbax", "tensorstore", "safetensors", "h5py")
"""What a recipe's module leaves unimported: its framework and the framework's own packages."""

TRAINING = training.with_recipes()
SCALE = scale.with_scale_recipes()


# Every registered recipe ----------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", TRAINING)
def test_a_training_recipe_is_a_complete_training_recipe(framework: str) -> None:
    cls = training.recipe_class(framework)
    assert issubclass(cls, TrainingRecipe)
    assert not inspect.isabstract(cls), f"{cls.__name__} lacks {sorted(cls.__abstractmethods__)}"
    assert set(recipes.declared_attributes(TrainingRecipe)) >= {"name", "checkpoint_format", "bn_format"}
    for attribute in recipes.declared_attributes(TrainingRecipe):
        value = getattr(cls, attribute, None)
        assert isinstance(value, str), f"{cls.__name__}.{attribute} is {value!r}, not a name"
        assert value, f"{cls.__name__}.{attribute} is empty"
    assert cls.name == framework, "the recipe's adapter is looked up by its name"
    formats = frameworks.adapter_class(framework).format_names()
    assert {cls.checkpoint_format, cls.bn_format} <= set(formats), formats


@pytest.mark.parametrize("framework", TRAINING)
def test_a_training_recipe_offers_no_public_method_the_interface_does_not_declare(framework: str) -> None:
    """What callers may use of a recipe is what `TrainingRecipe` declares: an extra public method would be an
    interface by convention again."""
    cls = training.recipe_class(framework)
    declared = {name for name, _ in inspect.getmembers(TrainingRecipe, inspect.isfunction)}
    public = {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}
    assert public <= declared, f"{cls.__name__} adds {sorted(public - declared)}: declare them in TrainingRecipe"


@pytest.mark.parametrize("framework", SCALE)
def test_a_scale_recipe_is_a_complete_scale_recipe(framework: str) -> None:
    cls = scale.recipe_class(framework)
    assert issubclass(cls, ScaleRecipe)
    assert not inspect.isabstract(cls), f"{cls.__name__} lacks {sorted(cls.__abstractmethods__)}"
    formats = set(frameworks.adapter_class(framework).format_names())
    assert cls.writers, "every scale recipe writes the checkpoints it is timed on"
    for format_name, (stem, suffix) in cls.writers.items():
        assert format_name in formats
        assert stem, format_name
        assert suffix.startswith("."), (format_name, suffix)
    assert all(isinstance(loader, ShardLoader) and loader.format in formats for loader in cls.loaders)
    assert cls.reference_loader in {"", *(loader.name for loader in cls.loaders)}
    if cls.distributed_engine:  # the safety matrix attacks the engine's job entry point with this format's files
        assert cls.distributed_format in formats, (cls.distributed_engine, cls.distributed_format)


@pytest.mark.parametrize("framework", SCALE)
def test_a_scale_recipe_defines_what_each_capability_it_declares_needs(framework: str) -> None:
    cls = scale.recipe_class(framework)
    needed = [*(scale.LOADING if cls.loaders else ()), *(scale.DISTRIBUTED if cls.distributed_engine else ())]
    below = cls.__mro__[: cls.__mro__.index(ScaleRecipe)]
    inherited = [name for name in needed if all(name not in vars(klass) for klass in below)]
    assert not inherited, f"{cls.__name__} leaves {inherited} to ScaleRecipe, which only refuses"
    if cls.distributed_engine:
        assert "cpu" in cls.distributed_backends
        assert isinstance(cls.distributed_load_unpickles, bool)


@pytest.mark.parametrize(("kind", "framework"), [*(("training", f) for f in TRAINING), *(("scale", f) for f in SCALE)])
def test_looking_up_a_recipe_class_imports_no_framework(kind: str, framework: str) -> None:
    """What lets the checks above run without the framework: a recipe imports it only when constructed."""
    code = (
        "import sys, json\n"
        f"from frameworks import {kind}\n"
        f"{kind}.recipe_class({framework!r})\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# A recipe that is not one is refused --------------------------------------------------------------------
class ByConvention:
    """A recipe as they were before the interfaces: every method, no base."""

    name = "numpy"
    checkpoint_format = checkpoint_name = bn_format = bn_name = "npy"
    new = train = save_checkpoint = load_checkpoint = state = copy_weights = None
    bn_model = bn_forward = bn_train_forward = bn_buffers = bn_save = bn_load = None


class Toy(TrainingRecipe):
    """A complete training recipe over the NumPy adapter: a model is a dict of arrays, there is no optimizer."""

    name = "numpy"
    checkpoint_format = "npy"
    checkpoint_name = "checkpoint.npy"
    bn_format = "npy"
    bn_name = "bn.npy"

    def new(self, seed: int = 0) -> tuple[Any, Any]:
        return {"w": np.full(3, seed, np.float32)}, None

    def train(self, model: Any, optimizer: Any, start: int, count: int) -> float:
        model["w"] += count
        return 0.0

    def write_checkpoint(self, temporary: Path, model: Any, optimizer: Any, epoch: int, loss: float) -> None:
        np.save(temporary, model["w"])
        if epoch < 0:
            raise RuntimeError("a save that fails half-way")

    def load_checkpoint(self, path: Path, model: Any, optimizer: Any, *, trusted: bool = False) -> tuple[int, float]:
        model["w"] = np.load(path)
        return 0, 0.0

    def state(self, model: Any, optimizer: Any) -> dict[str, np.ndarray]:
        return {"model.w": model["w"].copy()}

    def copy_weights(self, source: Any, target: Any) -> None:
        target["w"] = source["w"].copy()

    def bn_model(self, seed: int = 0) -> Any:
        return self.new(seed)[0]

    def bn_forward(self, model: Any, inputs: np.ndarray, training: bool) -> np.ndarray:
        return inputs

    def bn_train_forward(self, model: Any, inputs: np.ndarray) -> None:
        return None

    def bn_buffers(self, model: Any) -> dict[str, np.ndarray]:
        return {}

    def write_bn(self, model: Any, temporary: Path) -> None:
        np.save(temporary, model["w"])

    def bn_load(self, path: Path, seed: int) -> Any:
        return {"w": np.load(path)}


class WithoutBnLoad(Toy):
    bn_load = TrainingRecipe.bn_load  # still abstract


class Nameless(TrainingRecipe):
    """Every method, but no `bn_name` (nor any other declared attribute it could inherit)."""

    name = "numpy"
    checkpoint_format = checkpoint_name = bn_format = "npy"
    new = Toy.new
    train = Toy.train
    write_checkpoint = Toy.write_checkpoint
    load_checkpoint = Toy.load_checkpoint
    state = Toy.state
    copy_weights = Toy.copy_weights
    bn_model = Toy.bn_model
    bn_forward = Toy.bn_forward
    bn_train_forward = Toy.bn_train_forward
    bn_buffers = Toy.bn_buffers
    write_bn = Toy.write_bn
    bn_load = Toy.bn_load


@pytest.fixture
def numpy_names(monkeypatch: pytest.MonkeyPatch):
    """Make the NumPy adapter (which has no recipes) name a recipe of this module: `numpy_names("Toy")`."""

    def name(class_name: str, kind: str = "training_recipe") -> str:
        monkeypatch.setattr(frameworks.adapter_class("numpy"), kind, f"{__name__}:{class_name}")
        return "numpy"

    return name


def test_a_recipe_by_convention_is_refused_when_it_is_looked_up(numpy_names) -> None:
    with pytest.raises(TypeError, match=r"numpy's training recipe, .*:ByConvention, is .*not a subclass of .*Train"):
        training.recipe_class(numpy_names("ByConvention"))
    with pytest.raises(TypeError, match=r"numpy's scale recipe, .*:ByConvention, is .*not a subclass of .*ScaleRe"):
        scale.recipe_class(numpy_names("ByConvention", "scale_recipe"))


def test_a_recipe_missing_a_method_is_refused_when_it_is_looked_up_and_cannot_be_made(numpy_names) -> None:
    with pytest.raises(TypeError, match=r"WithoutBnLoad, lacks bn_load\(\) of .*TrainingRecipe: implement"):
        training.recipe_class(numpy_names("WithoutBnLoad"))
    with pytest.raises(TypeError, match="abstract method"):
        WithoutBnLoad()


def test_a_recipe_missing_a_declared_attribute_is_refused_when_it_is_looked_up(numpy_names) -> None:
    assert not inspect.isabstract(Nameless)
    with pytest.raises(TypeError, match=r"Nameless, lacks bn_name of .*TrainingRecipe: "):
        training.recipe_class(numpy_names("Nameless"))


def test_a_complete_recipe_is_found_and_its_saves_are_atomic(numpy_names, tmp_path: Path) -> None:
    """The base class makes every recipe's save atomic: a save that fails leaves the old file and no temporary."""
    recipe = training.training_recipe(numpy_names("Toy"))
    assert isinstance(recipe, Toy)
    assert recipe.adapter is frameworks.get_adapter("numpy")
    model, optimizer = recipe.new(seed=2)
    target = tmp_path / recipe.checkpoint_name
    recipe.save_checkpoint(target, model, optimizer, 1, 0.5)
    assert np.load(target).tolist() == [2, 2, 2]
    with pytest.raises(RuntimeError, match="half-way"):
        recipe.save_checkpoint(target, recipe.new(seed=7)[0], optimizer, -1, 0.5)
    assert np.load(target).tolist() == [2, 2, 2]
    assert [path.name for path in tmp_path.iterdir()] == [target.name]
    (tmp_path / "users").mkdir()
    with pytest.raises(UnsafeTargetError):
        recipe.bn_save(model, tmp_path / "users")


# Scale recipes --------------------------------------------------------------------------------------------
class FakeAdapter:
    name = "toy"

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def device_note(self) -> str:
        return "a CPU-only toy"


class ToyScale(ScaleRecipe):
    """A scale recipe that only writes (no loaders, no engine): what ScaleRecipe gives it is refusals."""

    writers: ClassVar[dict[str, tuple[str, str]]] = {"npy": ("model", ".npy")}

    def write_shard(self, shard: dict[str, np.ndarray], path: Path, format_name: str) -> None:
        path.write_bytes(b"".join(array.tobytes() for array in shard.values()))


class UnwrittenScale(ScaleRecipe):
    writers: ClassVar[dict[str, tuple[str, str]]] = {"npy": ("model", ".npy")}


def _loader(name: str = "mine", **fields: Any) -> ShardLoader:
    return ShardLoader(name, "safetensors", "a toy loader", lambda recipe, files, device: ({}, lambda: None), **fields)


def test_a_scale_recipe_without_write_shard_is_refused(numpy_names) -> None:
    with pytest.raises(TypeError, match=r"UnwrittenScale, lacks write_shard\(\) of .*ScaleRecipe: "):
        scale.recipe_class(numpy_names("UnwrittenScale", "scale_recipe"))
    with pytest.raises(TypeError, match="abstract method"):
        UnwrittenScale(FakeAdapter())


def test_a_scale_recipe_missing_what_a_declared_capability_needs_is_refused_when_defined() -> None:
    with pytest.raises(TypeError, match="Loading declares loaders but does not define materialize, host_bytes, desc"):
        type("Loading", (ToyScale,), {"loaders": (_loader(),)})
    with pytest.raises(TypeError, match="declares a distributed_engine but does not define distributed_backends, dis"):
        type("Distributed", (ToyScale,), {"distributed_engine": "toy-dcp", "distributed_save": ToyScale.write_shard})
    engine = {"distributed_engine": "toy-dcp", **dict.fromkeys(scale.DISTRIBUTED, lambda self, *a: None)}
    with pytest.raises(TypeError, match="Unformatted: a distributed_engine and its distributed_format are declared"):
        type("Unformatted", (ToyScale,), engine)
    assert type("Formatted", (ToyScale,), {**engine, "distributed_format": "npy"}).distributed_format == "npy"
    with pytest.raises(TypeError, match=r"Referenced: reference_loader 'theirs' is not one of its loaders \(none\)"):
        type("Referenced", (ToyScale,), {"reference_loader": "theirs"})
    assert type(
        "Complete", (ToyScale,), {"loaders": (_loader(),), **dict.fromkeys(scale.LOADING, lambda self, *a: None)}
    ).loaders


def test_a_scale_recipe_shares_the_writer_the_availability_check_and_refusals(tmp_path: Path) -> None:
    recipe = ToyScale(FakeAdapter())
    arrays = {"a": np.arange(4, dtype=np.float32), "b": np.arange(4, dtype=np.float32)}
    index = recipe.save_checkpoint(arrays, tmp_path / "ckpt", "npy", max_shard_bytes=16)
    assert index.name == "model.npy.index.json"
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == [
        "model-00001-of-00002.npy",
        "model-00002-of-00002.npy",
        "model.npy.index.json",
    ]
    with pytest.raises(UnsupportedError, match="toy's scale recipe writes no 'safetensors' checkpoint; it writes npy"):
        recipe.save_checkpoint(arrays, tmp_path / "other", "safetensors", 16)
    assert recipe.unavailable(_loader(devices=("cuda",), only_on="its own words"), "cpu") == "its own words"
    assert recipe.unavailable(_loader(), "cuda") == "no CUDA device here (a CPU-only toy)"
    assert "not installed here (pip install no-such-loader-package" in recipe.unavailable(
        _loader(package="no-such-loader-package"), "cpu"
    )
    assert recipe.unavailable(_loader(), "cpu") == ""
    assert recipe.device_peak("cpu") is None
    with pytest.raises(UnsupportedError, match="toy's scale recipe cannot describe a loaded tensor: it declares no lo"):
        recipe.describe(np.zeros(1))
    with pytest.raises(UnsupportedError, match="cannot load a distributed checkpoint: it declares no distributed_eng"):
        recipe.distributed_load([], tmp_path, "cpu", trusted=True)
