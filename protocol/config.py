"""Typed TOML configuration shared by the hub and the terminal.

A config file maps onto frozen dataclasses. Each field's ``metadata["doc"]`` documents the key;
:func:`build` checks every key and value and raises :class:`ConfigError` with one line naming the
file, the key and what was expected. Unknown keys are errors: a typo must not silently fall back
to a default that drives real hardware.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import HaochaError

T = TypeVar("T")


class ConfigError(HaochaError, ValueError):
    """An invalid configuration file or value; the message is one line for stderr."""


def field(
    default: Any = dataclasses.MISSING, doc: str = "", check: Callable[[Any], str | None] | None = None, **kw: Any
) -> Any:
    """A dataclass field with its documentation and an optional check returning an error text."""
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check}, **kw)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def build(cls: type[T], data: Mapping[str, Any], source: str, where: str = "") -> T:
    """Make ``cls`` from ``data``, validating every key; ``where`` prefixes key names in errors."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in known:
            raise ConfigError(f"{source}: unknown key '{where}{key}' (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for name, fld in known.items():
        if name not in data:
            if fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing key '{where}{name}' ({fld.metadata.get('doc', '')})")
            continue
        value = _coerce(hints[name], data[name], source, f"{where}{name}")
        check = fld.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{source}: '{where}{name}' {problem}, got {shown(data[name])}")
        values[name] = value
    return cls(**values)


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut short: an error stays one readable line whatever the file holds."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(args[0], value, source, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a table")
        return build(typing.cast(type, tp), value, source, f"{key}.")
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be a list")
        return tuple(_coerce(item_tp, v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a table")
        return {str(k): _coerce(val_tp, v, source, f"{key}.{k}") for k, v in value.items()}
    return _scalar(tp, value, source, key)


def _scalar(tp: Any, value: Any, source: str, key: str) -> Any:
    if tp is float and type(value) in (int, float):
        return float(value)
    if tp is Path and isinstance(value, str):
        return Path(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ConfigError(f"{source}: '{key}' must be {_type_name(tp)}, got {shown(value)}")


def positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def port_number(value: int) -> str | None:
    return None if 0 < value < 65536 else "must be a TCP port 1..65535"
