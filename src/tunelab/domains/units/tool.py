"""The `convert_units` tool: a bundled table of units (length, mass, volume, time, temperature) and the
conversion. It never raises on bad arguments; it answers {"ok": False, "error": ...} naming what is wrong."""

from __future__ import annotations

import math
from typing import Any

# unit -> (dimension, factor to the dimension's base unit); temperature is affine, handled apart
UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0), "km": ("length", 1000.0),
    "inch": ("length", 0.0254), "foot": ("length", 0.3048), "yard": ("length", 0.9144), "mile": ("length", 1609.344),
    "g": ("mass", 0.001), "kg": ("mass", 1.0), "t": ("mass", 1000.0), "oz": ("mass", 0.028349523125),
    "lb": ("mass", 0.45359237),
    "ml": ("volume", 0.001), "l": ("volume", 1.0), "cup": ("volume", 0.2365882365), "pint": ("volume", 0.473176473),
    "gallon": ("volume", 3.785411784),
    "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0), "day": ("time", 86400.0),
    "week": ("time", 604800.0),
    "C": ("temperature", 1.0), "F": ("temperature", 1.0), "K": ("temperature", 1.0),
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "value": {"type": "number", "description": "the amount to convert"},
        "from_unit": {"type": "string", "enum": list(UNITS), "description": "the unit of `value`"},
        "to_unit": {"type": "string", "enum": list(UNITS), "description": "the unit wanted"},
    },
    "required": ["value", "from_unit", "to_unit"],
    "additionalProperties": False,
}

TOOL_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {"name": "convert_units", "description": "Convert an amount between units of one dimension.",
                 "parameters": SCHEMA},
}


def _to_kelvin(value: float, unit: str) -> float:
    return {"C": value + 273.15, "F": (value - 32) * 5 / 9 + 273.15, "K": value}[unit]


def _from_kelvin(kelvin: float, unit: str) -> float:
    return {"C": kelvin - 273.15, "F": (kelvin - 273.15) * 9 / 5 + 32, "K": kelvin}[unit]


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """`value` in `from_unit` expressed in `to_unit` (both of one dimension; checked by convert_units)."""
    if UNITS[from_unit][0] == "temperature":
        return _from_kelvin(_to_kelvin(value, from_unit), to_unit)
    return value * UNITS[from_unit][1] / UNITS[to_unit][1]


def convert_units(args: Any) -> dict[str, Any]:
    """{"ok": True, "records": [{"value", "unit", "from_value", "from_unit"}]} or {"ok": False, "error"}."""
    if not isinstance(args, dict):
        return {"ok": False, "error": "arguments must be a JSON object with value, from_unit, to_unit"}
    extra = sorted(set(args) - set(SCHEMA["properties"]))
    if extra:
        return {"ok": False, "error": f"unknown argument(s) {', '.join(extra)}; valid: value, from_unit, to_unit"}
    value, src, dst = args.get("value"), args.get("from_unit"), args.get("to_unit")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > 1e15:
        return {"ok": False, "error": f"value must be a finite number of magnitude at most 1e15, got {value!r}"}
    for key, unit in (("from_unit", src), ("to_unit", dst)):
        if unit not in UNITS:
            return {"ok": False, "error": f"{key} {unit!r} is not a known unit; valid: {', '.join(UNITS)}"}
    if UNITS[src][0] != UNITS[dst][0]:
        return {"ok": False, "error": f"cannot convert {UNITS[src][0]} ({src}) to {UNITS[dst][0]} ({dst})"}
    if UNITS[src][0] == "temperature" and _to_kelvin(value, src) < 0:
        return {"ok": False, "error": f"{value} {src} is below absolute zero"}
    result = convert(float(value), src, dst)
    return {"ok": True, "records": [{"value": round(result, 4), "unit": dst, "from_value": value, "from_unit": src}]}
