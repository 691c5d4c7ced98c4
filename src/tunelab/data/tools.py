"""Tools as data: the OpenAI `tools` list a row or a request carries, checked, put on the conversation's
system turn (where every template renders it), and the tool calls checked against their JSON schemas.

A tool spec is `{"type": "function", "function": {"name", "description", "parameters": <JSON schema>}}`;
a bare `{"name", "description", "parameters"}` (as some datasets store it) is wrapped into that form,
and a list given as a JSON string is parsed.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tunelab.data.schema import Conversation, Turn
from tunelab.utils.errors import DataError


def normalize_tools(value: Any, param: str = "tools") -> list[dict]:
    """The tool specs in OpenAI form; DataError naming the bad entry (`tools[1].function.name: ...`)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise DataError(f"{param}: a string here must hold a JSON list of tool specs") from None
    if not isinstance(value, list):
        raise DataError(f"{param}: must be a list of tool specs ({{type: function, function: {{name, parameters}}}})")
    out, seen = [], set()
    for i, spec in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(spec, dict):
            raise DataError(f"{where}: a tool spec must be an object")
        fn = spec.get("function") if "function" in spec else spec  # bare function specs are wrapped
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise DataError(f"{where}.function.name: a tool needs a non-empty name")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise DataError(f"{where}.function.parameters: must be a JSON schema object")
        if fn["name"] in seen:
            raise DataError(f"{where}.function.name: tool '{fn['name']}' is defined twice")
        seen.add(fn["name"])
        out.append({"type": "function", "function": fn} if fn is spec else {**spec, "type": "function"})
    return out


def tools_of(turns: list[Turn]) -> list[dict] | None:
    """The tool specs a conversation offers (on its first system turn); None when it names none."""
    return turns[0].tools if turns and turns[0].role == "system" else None


def with_tools(turns: list[Turn], tools: list[dict] | None) -> list[Turn]:
    """`turns` with `tools` on the first system turn (a tools-only system turn is added when there is none;
    a renderer fills its text with the system prompt). None or [] leaves `turns` as they are (an OpenAI
    client's empty list offers nothing of its own)."""
    if not tools:
        return turns
    if turns and turns[0].role == "system":
        return [dataclasses.replace(turns[0], tools=list(tools))] + list(turns[1:])
    return [Turn("system", content="", tools=list(tools))] + list(turns)


def merge_specs(*lists: list[dict] | None) -> list[dict]:
    """The specs of several lists, the first of each name kept, in order."""
    out, seen = [], set()
    for specs in lists:
        for spec in specs or []:
            if spec["function"]["name"] not in seen:
                seen.add(spec["function"]["name"])
                out.append(spec)
    return out


def _path(error) -> str:
    return "arguments" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def schema_problems(tools: list[dict]) -> list[str]:
    """Tool specs whose `parameters` is not a valid JSON schema, one line each."""
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    out = []
    for i, spec in enumerate(tools):
        params = spec["function"].get("parameters")
        if params is None:
            continue
        try:
            validator_for(params).check_schema(params)
        except SchemaError as e:
            out.append(f"tools[{i}] ({spec['function']['name']}): parameters is not a valid JSON schema: {e.message}")
    return out


def call_problems(conv: Conversation) -> list[str]:
    """Tool calls of a conversation that offers tools, checked against them: the tool must be offered and
    its arguments must match its `parameters` schema (jsonschema). One line per problem, naming the turn."""
    tools = tools_of(conv.turns)
    if not tools:
        return []
    from jsonschema.validators import validator_for

    out = schema_problems(tools)
    broken = {p.split(" ", 1)[0] for p in out}
    specs = {s["function"]["name"]: (i, s["function"].get("parameters")) for i, s in enumerate(tools)}
    for n, t in enumerate(conv.turns, 1):
        if t.role != "tool_call":
            continue
        where = f"turn {n} (tool_call {t.name})"
        if t.name not in specs:
            out.append(f"{where}: tool '{t.name}' is not among the row's tools; valid: {', '.join(specs)}")
            continue
        i, params = specs[t.name]
        if params is None or f"tools[{i}]" in broken:
            continue
        validator = validator_for(params)(params)
        for e in sorted(validator.iter_errors(t.arguments), key=lambda e: list(e.absolute_path)):
            out.append(f"{where}: {_path(e)}: {e.message}")
    return out
