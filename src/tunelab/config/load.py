"""YAML in, YAML out: map nested dicts onto the config dataclasses, strictly.

An unknown key or a value of the wrong type is a ConfigError naming the key, the file and the
valid choices; nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from tunelab.config.schema import Config
from tunelab.utils.errors import ConfigError
from tunelab.utils.io import write_text


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotated type; allow int -> float and str lists from a scalar."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and ("no" if value is False else "yes") in choices:
            value = "no" if value is False else "yes"  # YAML 1.1 reads a bare `no` as false
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: {value!r} is not a valid choice{hint}; valid: {', '.join(map(str, choices))}")
        return value
    if origin in (typing.Union, types.UnionType):  # `str | list[str]`: the first member the value fits
        for member in typing.get_args(tp):
            try:
                return _coerce(value, member, where)
            except ConfigError:
                pass
        names = " or ".join(getattr(m, "__name__", str(m)) for m in typing.get_args(tp))
        raise ConfigError(f"{where}: expected {names}, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):  # `--method.target_modules=q_proj,v_proj`
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, where) for v in value] if item_tp is not Any else value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, str):
        # YAML 1.1 reads `3e-5` (no dot) as a string; a number is what was meant
        try:
            return tp(value)
        except ValueError:
            pass
    if tp in (int, float, str) and (not isinstance(value, tp) or isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is float and not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    return value


_BOUNDS = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b),
           "le": ("<=", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}


def range_error(value: Any, bounds: dict) -> str | None:
    """'V is out of range; valid: >= 1 and ...' when `value` falls outside `bounds` (ge/gt/le/lt), else None."""
    if not bounds or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if all(_BOUNDS[k][1](value, b) for k, b in bounds.items()):
        return None
    return f"{value!r} is out of range; valid: " + " and ".join(f"{_BOUNDS[k][0]} {b}" for k, b in bounds.items())


def check_range(value: Any, bounds: dict, where: str) -> None:
    """ConfigError naming the valid range when `value` falls outside `bounds` (ge/gt/le/lt)."""
    if (error := range_error(value, bounds)) is not None:
        raise ConfigError(f"{where}: {error}")


def check_ranges(obj: Any, section: str) -> None:
    """ConfigError for the first field of a config dataclass built in code that is out of its range."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{section}.{f.name}: {value!r} is not a finite number")
        check_range(value, f.metadata.get("range", {}), f"{section}.{f.name}")


def _from_dict(cls: type, data: Any, keypath: str, source: str) -> Any:
    where = f"{source}: {keypath or 'top level'}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{where}: unknown key '{key}'{hint}; valid keys: {', '.join(fields)}"
            )
        tp = hints[key]
        sub = f"{keypath}.{key}" if keypath else key
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _from_dict(tp, value if value is not None else {}, sub, source)
        else:
            kwargs[key] = _coerce(value, tp, f"{source}: {sub}")
            check_range(kwargs[key], fields[key].metadata.get("range", {}), f"{source}: {sub}")
    return cls(**kwargs)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(args: list[str]) -> dict:
    """`--train.max_steps=10 --data.skip_invalid=true` -> nested dict; values parsed as YAML scalars."""
    out: dict = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"override '{arg}': expected --section.key=value")
        key, raw = arg[2:].split("=", 1)
        parts = key.split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"override '{arg}': expected --section.key=value with a section among "
                f"{', '.join(f.name for f in dataclasses.fields(Config))}"
            )
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    """Read a YAML config (optional), apply overrides, and return a checked `Config`."""
    data: dict = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}:{line} is not valid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    if overrides:
        extra = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        data = _merge(data, extra)
        source = f"{source} + overrides" if path is not None else "overrides"
    return _from_dict(Config, data, "", source)


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    write_text(path, yaml.safe_dump(config_to_dict(cfg), allow_unicode=True, sort_keys=False))
