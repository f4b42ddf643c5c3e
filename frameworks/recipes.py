"""How a recipe class is found and checked: an adapter names it as "module:Class" (its `training_recipe` or
`scale_recipe`), the module is imported on first use (it imports no framework: the recipe does that when it
is constructed), and the class must be a complete subclass of its interface (`TrainingRecipe`,
`ScaleRecipe`), so that a recipe that is not one is refused when it is looked up, naming it, and not when a
benchmark first calls the method it lacks (which, for a framework missing here, would be never).

Standard library only.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TypeVar

Interface = TypeVar("Interface", bound=type)


def declared_attributes(interface: type) -> tuple[str, ...]:
    """The class attributes `interface` declares (annotates) without giving them a value: each recipe sets them."""
    return tuple(name for name in inspect.get_annotations(interface) if not hasattr(interface, name))


def unimplemented(cls: type, interface: type) -> list[str]:
    """What keeps `cls` from being a complete `interface`: its abstract methods and the declared class attributes
    it does not set (empty when it is complete)."""
    methods = sorted(getattr(cls, "__abstractmethods__", ()))
    return [
        *(f"{name}()" for name in methods),
        *(name for name in declared_attributes(interface) if not hasattr(cls, name)),
    ]


def resolve(target: str, interface: Interface, what: str) -> Interface:
    """The class `target` ("module:Class") names, checked to be a complete subclass of `interface`; TypeError
    naming `target` and what it lacks otherwise. `what` says whose recipe it is ("torch's training recipe")."""
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    expected = f"{interface.__module__}.{interface.__name__}"
    if not (isinstance(cls, type) and issubclass(cls, interface)):
        raise TypeError(f"{what}, {target}, is {cls!r}, not a subclass of {expected}: derive it from {expected}")
    if missing := unimplemented(cls, interface):
        raise TypeError(
            f"{what}, {target}, lacks {', '.join(missing)} of {expected}: implement its abstract methods and set the "
            "class attributes it declares"
        )
    return cls
