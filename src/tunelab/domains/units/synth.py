"""Synthesized unit-conversion dialogs (English), grounded in `convert_units`: every number an assistant
says comes from the tool's result. Kinds: a single conversion, a follow-up to another unit, a request
across dimensions (answered without a call), and a closing thanks."""

from __future__ import annotations

import json
import random

from tunelab.domains.units.tool import UNITS, convert_units

NAMES: dict[str, tuple[str, ...]] = {
    "mm": ("millimeters", "mm"), "cm": ("centimeters", "cm"), "m": ("meters", "metres", "m"),
    "km": ("kilometers", "kilometres", "km"), "inch": ("inches",), "foot": ("feet",), "yard": ("yards",),
    "mile": ("miles",), "g": ("grams", "g"), "kg": ("kilograms", "kilos", "kg"), "t": ("tonnes", "metric tons"),
    "oz": ("ounces", "oz"), "lb": ("pounds", "lbs"), "ml": ("milliliters", "ml"), "l": ("liters", "litres"),
    "cup": ("cups",), "pint": ("pints",), "gallon": ("gallons",), "s": ("seconds",), "min": ("minutes",),
    "h": ("hours",), "day": ("days",), "week": ("weeks",), "C": ("degrees Celsius", "°C"),
    "F": ("degrees Fahrenheit", "°F"), "K": ("kelvin",),
}
ASK = ("How many {to} is {v} {src}?", "Convert {v} {src} to {to}.", "What is {v} {src} in {to}?",
       "{v} {src} in {to}, please.", "Can you tell me how much {v} {src} is in {to}?",
       "I have {v} {src}. How many {to} is that?")
FOLLOW = ("And in {to}?", "What about in {to}?", "How much is that in {to}?")
ANSWER = ("{v} {src} is {r} {to}.", "That's {r} {to}.", "{v} {src} equals {r} {to}.", "It comes to {r} {to}.")
THANKS = (("Thanks!", "You're welcome!"), ("Great, thank you.", "Glad to help!"), ("Perfect, thanks.", "Any time!"))


def fmt(x: float) -> str:
    """A number as an answer says it: at most two decimals, no trailing zeros."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _value(rng: random.Random, unit: str) -> float | int:
    if unit == "K":
        return rng.randint(200, 400)
    if UNITS[unit][0] == "temperature":
        return rng.choice([rng.randint(-30, 110), rng.randint(0, 40)])
    return rng.choice([rng.randint(1, 100), rng.randint(100, 5000), round(rng.uniform(0.5, 50), 1)])


def _pick(rng: random.Random, dimension: str | None = None, other_than: str = "") -> str:
    units = [u for u, (d, _) in UNITS.items() if (dimension is None or d == dimension) and u != other_than]
    return rng.choice(units)


def _call(messages: list, value, src: str, dst: str) -> dict:
    args = {"value": value, "from_unit": src, "to_unit": dst}
    result = convert_units(args)
    messages.append({"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "convert_units", "arguments": json.dumps(args)}}]})
    messages.append({"role": "tool", "name": "convert_units", "content": json.dumps(result["records"])})
    return result["records"][0]


def _answer(rng: random.Random, record: dict, src_name: str, to_name: str) -> str:
    return rng.choice(ANSWER).format(v=fmt(record["from_value"]), src=src_name, r=fmt(record["value"]), to=to_name)


def one_dialog(rng: random.Random, i: int) -> dict:
    kind = rng.choices(["single", "follow_up", "cross_dimension", "thanks"], weights=[4, 3, 1, 2])[0]
    messages: list[dict] = []
    if kind == "cross_dimension":
        src = _pick(rng)
        dst = rng.choice([u for u, (d, _) in UNITS.items() if d != UNITS[src][0]])
        src_name, to_name = rng.choice(NAMES[src]), rng.choice(NAMES[dst])
        messages.append({"role": "user", "content": rng.choice(ASK).format(v=fmt(_value(rng, src)), src=src_name,
                                                                             to=to_name)})
        messages.append({"role": "assistant", "content": f"I can't convert {src_name} to {to_name}: one measures "
                         f"{UNITS[src][0]} and the other {UNITS[dst][0]}."})
        return {"id": f"units-{i}", "kind": kind, "messages": messages}
    src = _pick(rng)
    dst = _pick(rng, UNITS[src][0], other_than=src)
    value = _value(rng, src)
    src_name, to_name = rng.choice(NAMES[src]), rng.choice(NAMES[dst])
    messages.append({"role": "user", "content": rng.choice(ASK).format(v=fmt(value), src=src_name, to=to_name)})
    record = _call(messages, value, src, dst)
    messages.append({"role": "assistant", "content": _answer(rng, record, src_name, to_name)})
    if kind == "follow_up":
        dst2 = _pick(rng, UNITS[src][0], other_than=dst) if len([u for u, (d, _) in UNITS.items()
                                                                  if d == UNITS[src][0]]) > 2 else src
        to2 = rng.choice(NAMES[dst2])
        messages.append({"role": "user", "content": rng.choice(FOLLOW).format(to=to2)})
        record = _call(messages, value, src, dst2)
        messages.append({"role": "assistant", "content": _answer(rng, record, src_name, to2)})
    if kind == "thanks":
        user, reply = rng.choice(THANKS)
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return {"id": f"units-{i}", "kind": kind, "messages": messages}


def synthesize(n: int, seed: int = 0) -> list[dict]:
    """`n` dialogs in the OpenAI messages format, deterministic in `seed`."""
    rng = random.Random(seed)
    return [one_dialog(rng, i) for i in range(n)]
