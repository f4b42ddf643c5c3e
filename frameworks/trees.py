"""Trees of tensors: a tensor, a list of trees or a dict of str -> tree.

The kinds name what a format must be able to hold; they are the rows of the support table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KINDS = ("tensor", "list", "dict", "nested", "mlp", "checkpoint")
"""`nested` is a list or dict holding containers; `mlp` is a dict of MLP parameters; `checkpoint` is
a training checkpoint (model + Adam state + epoch + loss) in the framework's own idiom."""


def is_container(obj: Any) -> bool:
    return isinstance(obj, list | tuple | dict)


def map_tree(tree: Any, leaf_fn: Callable[[Any], Any]) -> Any:
    """Apply `leaf_fn` to every tensor, keeping lists as lists and dicts (with key order) as dicts."""
    if isinstance(tree, dict):
        return {key: map_tree(value, leaf_fn) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return [map_tree(value, leaf_fn) for value in tree]
    return leaf_fn(tree)


def count_nodes(tree: Any, limit: int) -> int:
    """How many containers and leaves `tree` has, counting each reference (pickle memoizes: a few bytes can
    name one list a billion times), walked without recursion and stopping once past `limit`."""
    count, stack = 0, [tree]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return count


def leaves(tree: Any) -> list[Any]:
    """The tensors of a tree in order."""
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in leaves(value)]
    if isinstance(tree, list | tuple):
        return [leaf for value in tree for leaf in leaves(value)]
    return [tree]


def tree_kind(tree: Any) -> str:
    """`tensor`, `list`, `dict` or `nested` (the `mlp` kind is a dict by structure)."""
    if isinstance(tree, dict):
        children = tree.values()
    elif isinstance(tree, list | tuple):
        children = tree
    else:
        return "tensor"
    if any(is_container(child) for child in children):
        return "nested"
    return "dict" if isinstance(tree, dict) else "list"


ROOT_NAME = "tensor"
"""The name of a checkpoint that is one tensor, once flattened."""


class NameClash(ValueError):
    """Two tensors of a nested checkpoint would have one name once flattened."""


def flatten_tensors(tree: Any, prefix: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """A nested checkpoint as one dict of NumPy tensors (keys joined with '.', as a state_dict names them; a key
    is kept exactly, the empty one too) and the names of the leaves that are not tensors (an epoch number, a
    string), which a benchmark of tensors drops; NameClash if two tensors would share a name."""
    import numpy as np

    arrays: dict[str, Any] = {}
    dropped: list[str] = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list | tuple) else None
    if items is None:
        if isinstance(tree, np.ndarray) and tree.dtype.kind in "biufcV":
            arrays[ROOT_NAME if prefix is None else prefix] = tree
        else:
            dropped.append(f"{'value' if prefix is None else prefix or repr('')} ({type(tree).__name__})")
        return arrays, dropped
    for key, value in items:
        name = str(key) if prefix is None else f"{prefix}.{key}"
        inner, lost = flatten_tensors(value, name)
        if clash := arrays.keys() & inner.keys():
            raise NameClash(f"two tensors would both be named {sorted(clash)[0]!r} once the checkpoint is flattened")
        arrays.update(inner)
        dropped += lost
    return arrays, dropped
