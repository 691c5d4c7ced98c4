"""Range-checked argparse types: a bad number stops at the command line with one line naming the option
and the valid range (argparse prints it and exits 2)."""

from __future__ import annotations

import argparse
import math


def number(kind: type = int, ge: float | None = None, gt: float | None = None, le: float | None = None):
    """An argparse `type` that parses `kind` and checks ge/gt/le; NaN and infinities are refused."""
    valid = " and ".join(f"{op} {b}" for op, b in ((">=", ge), (">", gt), ("<=", le)) if b is not None)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        ok = math.isfinite(value) and (ge is None or value >= ge) and (gt is None or value > gt) \
            and (le is None or value <= le)
        if not ok:
            raise argparse.ArgumentTypeError(f"{text} is out of range; valid: {valid or 'a finite number'}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


COUNT = number(int, ge=0)  # 0 meaning "all" or "none"
POSITIVE = number(int, ge=1)
