"""Reading the files serbench does not parse as tensors: stored runs' JSON and CSV, job and request files,
shard indexes, manifests, and the files environment variables name.

One rule for all of them. The path must be a regular file: checked with `stat` before it is opened, and again
on the descriptor, which is opened non-blocking, so a FIFO swapped in between can never block the read. Its
size must be within a cap the caller states (a stored run's env.json is a few KiB; 256 MiB of it would only
fill memory). Its content must be what the caller's schema says, with exact types: JSON's `"false"` is a
string and `1` is a number, neither is a boolean; NaN and Infinity are refused. Whatever fails raises
`StoredFileError`: one line naming the file, what is wrong, and what to do.

A schema is data: a Python type (`str`, `int`, `float`, `bool`; `int` never admits a boolean, `float` admits
an integer), `Number(minimum, above, integer)` (`POSITIVE` for times, `COUNT` for sizes), `OneOf(values)`,
`ListOf(schema)`, `MapOf(schema)` (an object of any keys), `Object(required, optional, extra)`, a tuple of
schemas (any one of them), or `ANY`.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frameworks.errors import SerbenchError

KiB, MiB = 1 << 10, 1 << 20
JSON_CAP = 16 * MiB
"""The default cap for a JSON file serbench reads (a full run's results.json is under 2 MiB)."""
MAX_DEPTH = 64
"""How deeply a JSON document may nest: deeper is not a file serbench wrote, and Python's parser recurses."""


class StoredFileError(SerbenchError, ValueError):
    """A file serbench reads is not a regular file, is over its cap, or does not hold what it must."""


def regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """`path`, checked to exist and be a regular file (following a link given as the path itself)."""
    source = Path(path)
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise StoredFileError(f"{source}: no such file ({what})") from None
    except OSError as error:
        raise StoredFileError(f"{source}: cannot be read ({what}): {error.strerror}") from None
    if not stat.S_ISREG(mode):
        raise StoredFileError(
            f"{source} is {_kind(mode)}, not a regular file ({what}); reading it could block or never end: "
            "give a regular file"
        )
    return source


def _kind(mode: int) -> str:
    kinds = {
        stat.S_IFDIR: "a directory",
        stat.S_IFIFO: "a FIFO (named pipe)",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
        stat.S_IFSOCK: "a socket",
    }
    return kinds.get(stat.S_IFMT(mode), "not a regular file")


def read_bytes(path: str | os.PathLike[str], *, cap: int, what: str) -> bytes:
    """The bytes of a regular file of at most `cap` bytes (see the module docstring)."""
    source = regular_file(path, what)
    try:
        descriptor = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise StoredFileError(f"{source}: cannot be opened ({what}): {error.strerror}") from None
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise StoredFileError(f"{source} became {_kind(status.st_mode)} while being opened ({what}); refusing it")
        if status.st_size > cap:
            raise StoredFileError(
                f"{source} is {status.st_size:,} bytes, over the {cap:,} a {what} may have: not a file serbench wrote"
            )
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise StoredFileError(f"{source} grew past the {cap:,} bytes a {what} may have while it was read")
    return data


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(data: bytes | str, source: str, what: str) -> Any:
    """JSON text as Python values, with NaN/Infinity and nesting deeper than MAX_DEPTH refused."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise StoredFileError(f"{source} nests too deeply to be a {what}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise StoredFileError(f"{source} is not valid JSON ({what}): {str(error).splitlines()[0][:200]}") from None
    if _depth(value) > MAX_DEPTH:
        raise StoredFileError(f"{source} nests more than {MAX_DEPTH} levels deep: not a {what}")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack += [(child, depth + 1) for child in item.values()]
        elif isinstance(item, list):
            stack += [(child, depth + 1) for child in item]
    return deepest


def read_json(path: str | os.PathLike[str], *, what: str, schema: Any = None, cap: int = JSON_CAP) -> Any:
    """A JSON file's value, checked against `schema` (default: any object)."""
    value = parse_json(read_bytes(path, cap=cap, what=what), str(path), what)
    check(value, MapOf(ANY) if schema is None else schema, f"{path}", what)
    return value


def read_jsonl(path: str | os.PathLike[str], *, what: str, schema: Any, cap: int = JSON_CAP) -> list[Any]:
    """Every line of a JSON-lines file, each checked against `schema`."""
    text = read_bytes(path, cap=cap, what=what).decode("utf-8", errors="strict")
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            value = parse_json(line, f"{path} line {number}", what)
            check(value, schema, f"{path} line {number}", what)
            values.append(value)
    return values


def read_csv(path: str | os.PathLike[str], *, what: str, cap: int = 64 * MiB, empty_as_nan: bool = True) -> Any:
    """A CSV file as a pandas DataFrame (empty cells as NaN unless `empty_as_nan` is False; no other text is
    read as missing: a format named "NA" stays a string)."""
    import pandas as pd

    data = read_bytes(path, cap=cap, what=what)
    try:
        return pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""] if empty_as_nan else [])
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise StoredFileError(f"{path} is not a readable CSV ({what}): {str(error).splitlines()[0][:200]}") from None


# -- schemas -----------------------------------------------------------------------------------------------------


class _Any:
    def __repr__(self) -> str:
        return "any value"


ANY = _Any()


@dataclass(frozen=True)
class OneOf:
    values: tuple[Any, ...]

    def __init__(self, *values: Any) -> None:
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class Number:
    """A finite number (an integer if `integer`) of at least `minimum`, and above it if `above`."""

    minimum: float = 0.0
    above: bool = False
    integer: bool = False
    maximum: float = math.inf


POSITIVE = Number(above=True)
"""A time, a rate: finite and above zero."""
MAX_TIME_S = 7 * 86400.0
DURATION = Number(above=True, maximum=MAX_TIME_S)
"""One timed round or a figure made of them: above zero and at most a week (a round of 1e308 s is no timing, and
squaring it overflowed the comparison's arithmetic)."""
COUNT = Number(integer=True)
"""A size in bytes, a number of rounds: an integer of at least zero."""


@dataclass(frozen=True)
class ListOf:
    item: Any
    max_items: int = 1_000_000


@dataclass(frozen=True)
class MapOf:
    value: Any


@dataclass(frozen=True)
class Object:
    required: Mapping[str, Any] = field(default_factory=dict)
    optional: Mapping[str, Any] = field(default_factory=dict)
    extra: bool = False
    """Whether keys outside `required` and `optional` are allowed (unchecked)."""


TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", type(None): "null"}


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {json.dumps(value)[:60] if _jsonable(value) else repr(value)[:60]}"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def check(value: Any, schema: Any, where: str, what: str) -> None:
    """StoredFileError unless `value` is what `schema` says (see the module docstring)."""
    problem = _problem(value, schema, "")
    if problem is not None:
        at, message = problem
        raise StoredFileError(f"{where}{f' at {at}' if at else ''}: {message} (not a {what} serbench reads)")


def _problem(value: Any, schema: Any, at: str) -> tuple[str, str] | None:
    if schema is ANY:
        return None
    if isinstance(schema, type):
        if schema is bool:
            ok = type(value) is bool
        elif schema is int:
            ok = type(value) is int
        elif schema is float:
            ok = type(value) in (int, float) and math.isfinite(value)
        else:
            ok = isinstance(value, schema)
        return None if ok else (at, f"expected {TYPE_NAMES.get(schema, schema.__name__)}, found {_describe(value)}")
    if isinstance(schema, tuple):  # alternatives
        problems = [_problem(value, option, at) for option in schema]
        return None if None in problems else problems[0]
    if isinstance(schema, Number):
        kinds = (int,) if schema.integer else (int, float)
        ok = type(value) in kinds and math.isfinite(value) and value >= schema.minimum
        ok = ok and not (schema.above and value == schema.minimum) and value <= schema.maximum
        what = ("an integer" if schema.integer else "a finite number") + (
            f" above {schema.minimum:g}" if schema.above else f" of at least {schema.minimum:g}"
        )
        what += f" and at most {schema.maximum:g}" if math.isfinite(schema.maximum) else ""
        return None if ok else (at, f"expected {what}, found {_describe(value)}")
    if isinstance(schema, OneOf):
        found = any(type(value) is type(option) and value == option for option in schema.values)
        choices = ", ".join(json.dumps(option) for option in schema.values)
        return None if found else (at, f"expected one of {choices}, found {_describe(value)}")
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return at, f"expected a list, found {_describe(value)}"
        if len(value) > schema.max_items:
            return at, f"a list of {len(value):,} items, more than {schema.max_items:,}"
        for index, item in enumerate(value):
            if (problem := _problem(item, schema.item, f"{at}[{index}]")) is not None:
                return problem
        return None
    if isinstance(schema, MapOf):
        if not isinstance(value, dict):
            return at, f"expected an object, found {_describe(value)}"
        for key, item in value.items():
            if (problem := _problem(item, schema.value, f"{at}.{key}" if at else key)) is not None:
                return problem
        return None
    if isinstance(schema, Object):
        if not isinstance(value, dict):
            return at, f"expected an object, found {_describe(value)}"
        missing = [key for key in schema.required if key not in value]
        if missing:
            return at, f"missing {', '.join(map(repr, missing))}"
        unknown = [key for key in value if key not in schema.required and key not in schema.optional]
        if unknown and not schema.extra:
            return at, f"unknown key {unknown[0]!r} (allowed: {', '.join([*schema.required, *schema.optional])})"
        for key, item_schema in {**schema.required, **schema.optional}.items():
            if key in value and (problem := _problem(value[key], item_schema, f"{at}.{key}" if at else key)):
                return problem
        return None
    raise TypeError(f"not a schema: {schema!r}")
