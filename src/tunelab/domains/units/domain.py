"""The unit-conversion domain as a plug-in: `convert_units` on a bundled table, no database needed."""

from __future__ import annotations

import re

from tunelab.domains.base import Domain, Tool, register_domain
from tunelab.domains.units.synth import synthesize
from tunelab.domains.units.tool import TOOL_SPEC, convert_units

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def units_tools(resource: str) -> dict[str, Tool]:
    return {"convert_units": convert_units}  # the table is bundled: no resource


def answer_numbers(items: list[dict]) -> dict:
    """Percent of reply items whose predicted reply says exactly the numbers the gold reply says."""
    hits = []
    for it in items:
        gold, pred = it.get("label") or "", it.get("predict") or ""
        if not gold.startswith("assistant:"):
            continue
        same = pred.startswith("assistant:") and sorted(_NUMBER.findall(gold)) == sorted(_NUMBER.findall(pred))
        hits.append(same)
    return {"answer_numbers_match": round(100 * sum(hits) / len(hits), 2) if hits else 0.0}


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
    extra_metrics=answer_numbers,
))
