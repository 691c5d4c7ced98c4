"""Three tools over small bundled tables: weather, unit conversion, calendar.

Use it with `tunelab chat RUN --tools examples/multitool/tools.py` (or `tunelab serve ... --tools ...`).
tunelab reads `TOOLS`; each function's spec comes from its type hints and docstring.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

TABLES = Path(__file__).resolve().parent / "tables"

# unit -> (dimension, factor to the dimension's base unit); temperatures are converted apart
UNITS = {"m": ("length", 1.0), "km": ("length", 1000.0), "mile": ("length", 1609.344), "foot": ("length", 0.3048),
         "kg": ("mass", 1.0), "lb": ("mass", 0.45359237), "g": ("mass", 0.001),
         "l": ("volume", 1.0), "gallon": ("volume", 3.785411784), "C": ("temperature", 1.0),
         "F": ("temperature", 1.0)}


def _rows(name: str) -> list[dict]:
    with open(TABLES / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def get_weather(city: str, day: Literal["today", "tomorrow"] = "today") -> dict:
    """The weather forecast for a city.

    Args:
        city: the city name, e.g. Paris
        day: today or tomorrow
    """
    for r in _rows("weather.csv"):
        if r["city"].lower() == city.strip().lower() and r["day"] == day:
            return {"city": r["city"], "day": day, "condition": r["condition"], "high_c": int(r["high_c"]),
                    "low_c": int(r["low_c"])}
    raise ValueError(f"no forecast for {city!r}; known cities: "
                     + ", ".join(sorted({r['city'] for r in _rows('weather.csv')})))


def convert_units(value: float, from_unit: Literal[tuple(UNITS)], to_unit: Literal[tuple(UNITS)]) -> dict:
    """Convert an amount between two units of the same kind.

    Args:
        value: the amount to convert
        from_unit: the unit of value
        to_unit: the unit wanted
    """
    if UNITS[from_unit][0] != UNITS[to_unit][0]:
        raise ValueError(f"cannot convert {UNITS[from_unit][0]} to {UNITS[to_unit][0]}")
    if UNITS[from_unit][0] == "temperature":
        result = value * 9 / 5 + 32 if (from_unit, to_unit) == ("C", "F") else (
            (value - 32) * 5 / 9 if (from_unit, to_unit) == ("F", "C") else value)
    else:
        result = value * UNITS[from_unit][1] / UNITS[to_unit][1]
    return {"value": round(result, 2), "unit": to_unit}


def list_events(date: str) -> list[dict]:
    """The calendar's events on one day, in time order.

    Args:
        date: the day as YYYY-MM-DD
    """
    return [{"time": r["time"], "title": r["title"], "place": r["place"]}
            for r in _rows("calendar.csv") if r["date"] == date.strip()]


TOOLS = [get_weather, convert_units, list_events]
