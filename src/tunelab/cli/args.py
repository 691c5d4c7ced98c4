"""Range-checked argparse types: a bad number stops at the command line with one line naming the option
and the valid range (argparse prints it and exits 2)."""

from __future__ import annotations

import argparse
import math

from tunelab.config.load import range_error


def number(kind: type = int, **bounds: float):
    """An argparse `type` that parses `kind` and checks `bounds` (ge/gt/le/lt, as config fields declare
    them: config.load.range_error); NaN and infinities are refused."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if (error := range_error(value, {k: v for k, v in bounds.items() if v is not None})) is not None:
            raise argparse.ArgumentTypeError(error)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


COUNT = number(int, ge=0)  # 0 meaning "all" or "none"
POSITIVE = number(int, ge=1)


def add_config_args(parser: argparse.ArgumentParser, cls: type, names: list[str],
                    rename: dict[str, str] | None = None) -> None:
    """`--field-name` options for fields of a config dataclass, with its types, defaults, ranges, choices and
    help text: one source for every command's options (nothing copied here)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        f, tp = fields[name], hints[name]
        flag = "--" + (rename or {}).get(name, name).replace("_", "-")
        default = f.default
        kw: dict = {"dest": name, "default": default, "help": f"{f.metadata.get('help', '')} (default: {default!r})"}
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is typing.Literal:
            kw["choices"] = list(typing.get_args(tp))
        elif tp in (int, float):
            kw["type"] = number(tp, **f.metadata.get("range", {}))
        parser.add_argument(flag, **kw)


def config_from_args(args: argparse.Namespace, cls: type, **fixed):
    """The config dataclass with the fields the command line set (and `fixed` values), the rest defaults."""
    import dataclasses

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **fixed})


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line, `tunelab: error: ...`, exit 2 (no usage block before it)."""

    def error(self, message: str):
        self.exit(2, f"tunelab: error: {message} (see `{self.prog} --help`)\n")
