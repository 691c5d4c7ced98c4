"""A domain: the tools an assistant calls and everything the generic layers need to know about them.

Generic code (train, evaluate, infer, serve, cli) never names a domain: it finds one by `data.domain`
through `get_domain` and asks it for its tools, prompts, evaluation rendering, display and data.
A new domain is one package with a module that calls `register_domain` (hotel, units).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from tunelab.utils.errors import ConfigError

Tool = Callable[[dict], dict]  # arguments -> {"ok": True, "records": [...]} or {"ok": False, "error": "..."}


@dataclass(frozen=True)
class Domain:
    name: str
    description: str
    make_tools: Callable[[str], dict[str, Tool]]  # (resource path, e.g. a database; '' when none) -> tools
    tool_specs: tuple[dict, ...]  # OpenAI-style function specs of the tools
    system_prompt: str  # the default system prompt of its recipes
    fallback_reply: str  # said when the tools fail twice in a turn
    display_columns: tuple[str, ...] = ()  # record fields a results table shows (web page)
    record_key: str = ""  # the field naming a result, for tool execution match ('' = the whole record)
    eval_prefixes: dict[str, str] = field(default_factory=dict)  # tool name -> its rendered-turn prefix
    example: str = ""  # an example request (web page placeholder)
    generate: Callable[[int, int, str], list[dict]] | None = None  # (n, seed, resource) -> dialog rows
    extra_metrics: Callable[[list[dict]], dict] | None = None  # scored items -> extra metrics, in percent
    # (reply, records of the context's last tool result ([] if none), last user turn) -> {fact kind:
    # (n_stated, n_unsupported)}: evaluate's error analysis of replies; None = not analysed
    reply_facts: Callable[[str, list, str], dict[str, tuple[int, int]]] | None = None
    # (records, the call's arguments, what the user turns say) -> the records the model reads under
    # data.record_view=relevant (data.render.RecordView); None = the domain has no such view
    relevant_view: Callable[[Any, dict | None, str], Any] | None = None

    # ---------------------------------------------------------------- evaluation rendering of tool turns
    # A tool call renders as `<prefix>:\n<json arguments>`, the prefix being the tool's name unless the
    # domain names another (the hotel reference table writes `search:`); a reply as `assistant: <text>`.

    def prefix(self, tool_name: str) -> str:
        return self.eval_prefixes.get(tool_name, tool_name)

    def tool_for(self, prefix: str) -> str | None:
        """The tool a rendered prefix stands for (None when the domain has no such tool)."""
        names = {self.prefix(spec["function"]["name"]): spec["function"]["name"] for spec in self.tool_specs}
        return names.get(prefix)

    def render_call(self, name: str, arguments: Any, raw: str = "") -> str:
        body = json.dumps(arguments, ensure_ascii=False) if arguments is not None else raw
        return f"{self.prefix(name)}:\n{body}"


DOMAINS: dict[str, Domain] = {}


def register_domain(domain: Domain) -> Domain:
    DOMAINS[domain.name] = domain
    return domain


def get_domain(name: str) -> Domain | None:
    """The registered domain (None for '', no domain); the config loader has checked the name."""
    return DOMAINS[name] if name else None


def domain_of_tool(tool_name: str) -> Domain | None:
    """The registered domain that has a tool of this name (None when none has)."""
    return next((d for d in DOMAINS.values() if any(s["function"]["name"] == tool_name for s in d.tool_specs)),
                None)


def record_view(domain: str, mode: str):
    """The records view of data.record_view: None for full, the domain's relevant view otherwise."""
    if mode == "full":
        return None
    plugin = get_domain(domain)
    if plugin is None or plugin.relevant_view is None:
        have = ", ".join(sorted(d.name for d in DOMAINS.values() if d.relevant_view)) or "none"
        raise ConfigError(f"data.record_view={mode}: data.domain '{domain}' has no such view (domains that "
                          f"have one: {have}); use data.record_view=full")
    return plugin.relevant_view


def domain_tools(name: str, resource: str) -> dict[str, Tool]:
    """The tools of domain `name` on `resource` ({} for no domain)."""
    domain = get_domain(name)
    return domain.make_tools(resource) if domain else {}
