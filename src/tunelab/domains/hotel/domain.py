"""The hotel domain as a plug-in: its tool on a SQLite database, prompts, evaluation form and data."""

from __future__ import annotations

from pathlib import Path

from tunelab.domains.base import Domain, Tool, register_domain
from tunelab.domains.hotel.db import connect
from tunelab.domains.hotel.facts import reply_facts
from tunelab.domains.hotel.synth import synthesize
from tunelab.domains.hotel.tool import TOOL_SPEC, search_hotels
from tunelab.domains.hotel.view import RelevantFacilities
from tunelab.utils.errors import ConfigError


def hotel_tools(db: str) -> dict[str, Tool]:
    if not db or not Path(db).is_file():
        raise ConfigError(f"data.db '{db}': hotel database not found; build one with `tunelab hotel build-db`")
    conn = connect(db)
    return {"search_hotels": lambda args: search_hotels(conn, args)}


def generate(n: int, seed: int, db: str) -> list[dict]:
    if not db:
        raise ConfigError("--db: hotel dialogs are synthesized from a hotel database; build one with "
                          "`tunelab hotel build-db` and pass its path")
    return synthesize(db, n, seed=seed)


HOTEL = register_domain(Domain(
    name="hotel",
    description="Beijing hotel booking (Chinese): search_hotels on a SQLite database",
    make_tools=hotel_tools,
    tool_specs=(TOOL_SPEC,),
    system_prompt="你是酒店预订助手。需要查酒店时调用search_hotels工具，再根据查询结果回答客人。",
    fallback_reply="抱歉，我暂时没能查到合适的结果，您可以换个说法或调整条件再试试。",
    display_columns=("name", "type", "price", "rating", "address", "subway", "phone", "facilities"),
    record_key="name",
    eval_prefixes={"search_hotels": "search"},  # the reference table's rendered form
    example="想住经济型的，500块以内",
    generate=generate,
    reply_facts=reply_facts,  # evaluate's error analysis: reply facts against the search results
    relevant_view=RelevantFacilities(),  # data.record_view=relevant: facilities the dialog names
))
