"""Tools a domain offers to the agent loop, by domain name: name -> callable(args) -> result dict.

A result is {"ok": True, "records": [...]} or {"ok": False, "error": "..."}; a tool never raises
for bad arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tunelab.utils.errors import ConfigError

Tool = Callable[[dict], dict]


def hotel_tools(db: str) -> dict[str, Tool]:
    from tunelab.domains.hotel import connect, search_hotels

    if not db or not Path(db).is_file():
        raise ConfigError(f"data.db '{db}': hotel database not found; build one with `tunelab hotel build-db`")
    conn = connect(db)
    return {"search_hotels": lambda args: search_hotels(conn, args)}


DOMAINS: dict[str, Callable[[str], dict[str, Tool]]] = {"hotel": hotel_tools}


def domain_tools(domain: str, db: str) -> dict[str, Tool]:
    if not domain:
        return {}
    if domain not in DOMAINS:
        raise ConfigError(f"data.domain '{domain}' is unknown; valid: '' or {', '.join(DOMAINS)}")
    return DOMAINS[domain](db)
