"""The unit-conversion domain as a plug-in: `convert_units` on a bundled table, no database needed."""

from __future__ import annotations

import re

from tunelab.domains.base import Domain, Tool, register_domain
from tunelab.domains.units.synth import synthesize
from tunelab.domains.units.tool import TOOL_SPEC, convert_units

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def units_tools(resource: str) -> dict[str, Tool]:
    return {"convert_units": convert_units}  # the table is bundled: no resource


def answer_value(items: list[dict]) -> dict:
    """Percent of the replies that state a converted amount (the gold reply's last number: every answer
    phrasing ends on it) whose predicted reply ends on the same number, whatever the wording around it."""
    hits = []
    for it in items:
        gold, pred = it.get("label") or "", it.get("predict") or ""
        numbers = _NUMBER.findall(gold)
        if not gold.startswith("assistant:") or not numbers:
            continue
        said = _NUMBER.findall(pred) if pred.startswith("assistant:") else []
        hits.append(bool(said) and float(said[-1]) == float(numbers[-1]))
    return {"answer_value_match": round(100 * sum(hits) / len(hits), 2) if hits else 0.0}


UNITS_DOMAIN = register_domain(Domain(
    name="units",
    description="unit conversion (English): convert_units over a bundled table of length, mass, volume, time, "
                "temperature",
    make_tools=units_tools,
    tool_specs=(TOOL_SPEC,),
    system_prompt="You convert units. Call convert_units for every conversion and answer with its result.",
    fallback_reply="Sorry, I could not convert that; please give an amount and two units of the same kind.",
    display_columns=("from_value", "from_unit", "value", "unit"),
    record_key="value",
    example="How many km is 26.2 miles?",
    generate=lambda n, seed, resource: synthesize(n, seed),
    extra_metrics=answer_value,
))
