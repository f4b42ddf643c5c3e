"""Make a load honest: every byte of the loaded tree is really in memory on its device.

Eager loaders already copied the data into fresh buffers; touching one byte per page confirms
it is resident at the cost of a page walk. Lazy loaders (safetensors.torch maps the file) have
read nothing yet, and touching pages of a mapped file only maps them, so their tensors are
copied, which reads every byte. A checksum would cap the figure at the hash's own speed, so none
is used. `Adapter.ready` waits for asynchronous engines (MXNet) and CUDA copies to finish.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from frameworks import Adapter
from frameworks.trees import leaves

PAGE = 4096


def touch_pages(array: np.ndarray) -> int:
    """Read one byte in every page of `array`; returns a value so the read cannot be skipped."""
    if array.size == 0:
        return 0
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    return int(flat[::PAGE].sum(dtype=np.uint64)) + int(flat[-1])


def materialize(adapter: Adapter, tree: Any, lazy: bool = False) -> list[np.ndarray]:
    """Force the load to completion (see the module docstring).

    Returns the copies made for a lazy load: they stay alive until the caller drops them, as a
    user's tensors would, so no copy lands in a cache-hot buffer freed by the previous one.
    """
    copies = []
    for leaf in leaves(tree):
        view = adapter.ready(leaf)
        if view is None:
            continue
        if lazy:
            view = np.array(view, copy=True)
            copies.append(view)
        touch_pages(view)
    return copies
