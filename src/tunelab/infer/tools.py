"""Tools chat and serve can run: registered Python functions, a domain's or a user's (`--tools my_tools.py`).

A tools module lists its functions in `TOOLS` (a list, or a dict name -> function). Each function takes
the call's arguments as keyword arguments and returns JSON-able records (a list, or one object); its
spec comes from its `tool_spec` attribute (an OpenAI function spec) when it has one, else from its
signature (type hints, defaults) and docstring (first paragraph; `name: text` lines under `Args:`).
Arguments are checked against the spec's JSON schema before the function runs; a failure or an
exception is answered as the tool's error, so the model can correct itself.

Importing a tools module runs its code: it is only ever named by the user (`--tools`), never by a run.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunelab.data.tools import merge_specs, normalize_tools
from tunelab.domains import Tool, get_domain
from tunelab.utils.errors import ConfigError, DataError
from tunelab.utils.log import log

JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


@dataclass
class Toolbox:
    """Runnable tools by name and the specs offered to the model for them."""

    tools: dict[str, Tool] = field(default_factory=dict)
    specs: list[dict] = field(default_factory=list)

    def merged(self, other: "Toolbox") -> "Toolbox":
        """Both toolboxes; `other`'s tool wins where both have a name."""
        return Toolbox({**self.tools, **other.tools}, merge_specs(other.specs, self.specs))


def _type_schema(tp: Any) -> dict:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        kinds = {JSON_TYPES.get(type(a)) for a in args}
        return {"type": kinds.pop(), "enum": list(args)} if len(kinds) == 1 and None not in kinds else {"enum": list(args)}
    if origin is typing.Union or type(tp).__name__ == "UnionType":  # Optional[X] / X | None
        rest = [a for a in args if a is not type(None)]
        return _type_schema(rest[0]) if len(rest) == 1 else {}
    if origin in (list, tuple):
        return {"type": "array", **({"items": _type_schema(args[0])} if args else {})}
    base = origin or tp
    return {"type": JSON_TYPES[base]} if base in JSON_TYPES else {}


def _doc_parts(fn: Callable) -> tuple[str, dict[str, str]]:
    """(description: the docstring's first paragraph, {argument: its `name: text` line under Args:})."""
    doc = inspect.getdoc(fn) or ""
    head, _, rest = doc.partition("\n\n")
    args = {}
    for m in re.finditer(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.+)$", rest.split("Args:", 1)[-1] if "Args:" in rest else "",
                         re.MULTILINE):
        args[m.group(1)] = m.group(2).strip()
    return " ".join(head.split()), args


def function_spec(fn: Callable) -> dict:
    """The OpenAI function spec of a tool function: its `tool_spec`, else its signature and docstring."""
    if getattr(fn, "tool_spec", None) is not None:
        return normalize_tools([fn.tool_spec], f"{fn.__name__}.tool_spec")[0]
    description, arg_docs = _doc_parts(fn)
    hints = typing.get_type_hints(fn)
    props, required = {}, []
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        prop = _type_schema(hints[name]) if name in hints else {}
        if name in arg_docs:
            prop["description"] = arg_docs[name]
        props[name] = prop
        if p.default is p.empty:
            required.append(name)
    params = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return {"type": "function", "function": {"name": fn.__name__, "description": description, "parameters": params}}


def as_tool(fn: Callable, spec: dict) -> Tool:
    """`fn` in the Tool protocol: arguments checked against the spec's schema, records or an error back."""
    from jsonschema.validators import validator_for

    params = spec["function"].get("parameters") or {"type": "object"}
    validator = validator_for(params)(params)

    def run(arguments: dict) -> dict:
        errors = [f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}"
                  for e in validator.iter_errors(arguments)]
        if errors:
            return {"ok": False, "error": "; ".join(errors)}
        try:
            out = fn(**arguments)
        except Exception as e:  # a tool's bug is the model's error message, never the end of a chat
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
        if isinstance(out, dict) and isinstance(out.get("ok"), bool):  # already in the Tool protocol
            return out
        return {"ok": True, "records": out if isinstance(out, list) else [out]}

    return run


def load_tools_module(path: str | Path) -> Toolbox:
    """The tools of a Python file's `TOOLS`; ConfigError naming the file when it cannot give them."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise ConfigError(f"--tools {path}: not a Python file (.py) of tool functions")
    name = f"tunelab_user_tools_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and typing look a module up by name while it loads
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise ConfigError(f"--tools {path}: importing it failed: {type(e).__name__}: {e}") from None
    fns = getattr(module, "TOOLS", None)
    fns = list(fns.values()) if isinstance(fns, dict) else fns
    if not isinstance(fns, list) or not fns or not all(callable(f) for f in fns):
        raise ConfigError(f"--tools {path}: needs TOOLS = [function, ...] (or a dict name -> function)")
    box = Toolbox()
    for fn in fns:
        try:
            spec = function_spec(fn)
        except (DataError, KeyError, TypeError, NameError) as e:
            raise ConfigError(f"--tools {path}: {getattr(fn, '__name__', fn)}: no usable spec ({e})") from None
        box.tools[spec["function"]["name"]] = as_tool(fn, spec)
        box.specs.append(spec)
    log.info(f"tools from {path}: {', '.join(box.tools)}")
    return box


def domain_toolbox(domain: str, resource: str) -> Toolbox:
    """The tools of domain `domain` on `resource` and their specs (empty for no domain)."""
    plugin = get_domain(domain)
    if plugin is None:
        return Toolbox()
    return Toolbox(plugin.make_tools(resource), list(plugin.tool_specs))


def offered_specs(trained: list[dict] | None, runnable: Toolbox, user: Toolbox) -> list[dict] | None:
    """The specs a prompt offers when its conversation names none: the run's training tools and the user's
    tools, and then every runnable one too; None (no tools block: the run's rendering as trained) when the
    run had no tools in training and the user gave none."""
    if not trained and not user.specs:
        return None
    return merge_specs(trained, user.specs, runnable.specs)
