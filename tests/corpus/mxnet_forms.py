"""Builders of the MXNet 1.9.1 forms, run in the mxnet environment. MXNet's default is its legacy API (`mx.nd`
arrays, Gluon without `npx.set_np()`): `net.save_parameters`, `mx.nd.save` and `HybridBlock.export` write
NDArray-list files with the V2 marker 0xF993FAC9 (legacy shapes). With `npx.set_np()` (d2l's way, and
serbench's) the same calls write the V3 marker 0xF993FACA. Each form is written in a fresh interpreter state:
NumPy mode, once set, is global, so the legacy builders refuse to run after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.corpus.build import Expected


def _mxnet(numpy_mode: bool) -> Any:
    if not hasattr(np, "bool"):
        np.bool = np.bool_  # MXNet 1.9.1 still names numpy.bool
    import mxnet as mx
    from mxnet import npx

    if npx.is_np_array() != numpy_mode:
        if not numpy_mode:
            raise RuntimeError("a legacy MXNet form must be built before any NumPy-mode one (npx.set_np is global)")
        npx.set_np()
    mx.random.seed(27)
    return mx


def _net(mx: Any) -> Any:
    """A Gluon HybridSequential (Dense 16 relu, BatchNorm, Dense 4), initialised and run once in training."""
    from mxnet import autograd
    from mxnet.gluon import nn

    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="relu", in_units=8), nn.BatchNorm(in_channels=16), nn.Dense(4, in_units=16))
    net.initialize(mx.init.Xavier())
    inputs = (mx.np if mx.util.is_np_array() else mx.nd).array(
        np.random.default_rng(27).normal(size=(5, 8)).astype(np.float32)
    )
    with autograd.record():
        net(inputs)
    return net


def _by_structure(net: Any) -> dict[str, np.ndarray]:
    """The parameters under the structural names `save_parameters` writes ("0.weight", "1.running_mean", ...)."""
    return {name: param.data().asnumpy() for name, param in net._collect_params_with_prefix().items()}


def legacy_save_parameters(root: Path) -> Expected:
    mx = _mxnet(numpy_mode=False)
    net = _net(mx)
    net.save_parameters(str(root / "net.params"))
    return Expected(_by_structure(net))


def legacy_nd_save(root: Path) -> Expected:
    """`mx.nd.save("arrays.nd", {name: NDArray})`: a dict of float32, int64 and float16 arrays."""
    mx = _mxnet(numpy_mode=False)
    rng = np.random.default_rng(27)
    arrays = {
        "weight": rng.normal(size=(4, 3)).astype(np.float32),
        "counts": np.arange(6, dtype=np.int64).reshape(2, 3),
        "half": rng.normal(size=(5,)).astype(np.float16),
    }
    mx.nd.save(str(root / "arrays.nd"), {key: mx.nd.array(value, dtype=value.dtype) for key, value in arrays.items()})
    return Expected(arrays)


def legacy_export(root: Path) -> Expected:
    """`net.hybridize(); net(x); net.export(dir/"model")`: model-symbol.json and model-0000.params, whose names
    are `arg:<parameter>` and `aux:<running statistic>` (so this form is matched by value)."""
    mx = _mxnet(numpy_mode=False)
    net = _net(mx)
    net.hybridize()
    net(mx.nd.ones((1, 8)))
    net.export(str(root / "model"))
    return Expected({param.name: param.data().asnumpy() for param in net.collect_params().values()})


def np_save_parameters(root: Path) -> Expected:
    """With `npx.set_np()`: `net.save_parameters("net.params")`, the V3 marker (what serbench writes)."""
    mx = _mxnet(numpy_mode=True)
    net = _net(mx)
    net.save_parameters(str(root / "net.params"))
    return Expected(_by_structure(net))


def npx_save(root: Path) -> Expected:
    """With `npx.set_np()`: `npx.save("arrays.npx", {name: np.ndarray})`, d2l's way to save a dict of arrays."""
    mx = _mxnet(numpy_mode=True)
    rng = np.random.default_rng(27)
    arrays = {"weight": rng.normal(size=(4, 3)).astype(np.float32), "bias": np.zeros(3, np.float32)}
    mx.npx.save(str(root / "arrays.npx"), {key: mx.np.array(value, dtype=value.dtype) for key, value in arrays.items()})
    return Expected(arrays)
