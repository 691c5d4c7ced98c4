"""Chat templates as data: one YAML file of Jinja snippets per template, registered by name.

A turn renders as prefix[role] + body + end + sep. For target turns (assistant, tool_call) body and
end are labels, so the model learns to answer and to stop; prefix and sep never are. Tool calls are
rendered as compact JSON (no spaces, no ASCII escapes); tool results as a table when the records share
their keys (`compact_records`), which costs the fewest tokens, or as plain JSON (`tool_results: json`).
A system turn that carries tool specs renders them with the template's `tools` snippet, in the words of
the model family's own template (ChatML: Qwen's `# Tools` block; Gemma: its function-calling prompt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

import jinja2
import yaml

from tunelab.data.schema import Turn
from tunelab.utils.errors import ConfigError

_env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
# as Hugging Face chat templates render `tojson` (Jinja's own escapes <, >, & and ' for HTML)
_env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
# a template file without its own `tools` snippet: the specs as JSON lines after the system text
DEFAULT_TOOLS = ("{% if system %}{{ system }}\n\n{% endif %}Tools (call one as <tool_call>{\"name\": ..., "
                 "\"arguments\": {...}}</tool_call>):{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}")
TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"


def compact_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    return value if isinstance(value, str) else compact_json(value)


def _tabular(records: list[dict]) -> bool:
    """Same keys in the same order, scalar cells or lists of scalars, no separator inside a cell."""
    keys = list(records[0])
    for r in records:
        if list(r) != keys:
            return False
        for v in r.values():
            for x in v if isinstance(v, list) else [v]:
                if isinstance(x, (dict, list)):
                    return False
                if isinstance(x, str) and ("|" in x or "\n" in x or (isinstance(v, list) and "," in x)):
                    return False
    return True


def compact_records(records: Any) -> str:
    """Tool records in the fewest tokens that keep every fact.

    Flat records with the same keys render as a table: a header line of the keys, then one
    `|`-separated line per record, lists joined by commas, nulls empty (JSON would repeat every key
    in every record). Anything else renders as compact JSON, one record per line, nulls dropped.
    """
    if isinstance(records, list) and records and all(isinstance(r, dict) for r in records):
        if _tabular(records):
            keys = list(records[0])
            return "\n".join(["|".join(keys)] + ["|".join(_cell(r[k]) for k in keys) for r in records])
        return "\n".join(compact_json({k: v for k, v in r.items() if v is not None}) for r in records)
    return records if isinstance(records, str) else compact_json(records)


@dataclass
class ChatTemplate:
    name: str
    match: list[str]
    bos: str
    prefix: dict[str, str]
    end: str
    sep: str
    tool_call: str
    tool_result: str
    specials: dict  # bos_token / eos_token of the tokenizer, for templates that name them
    tool_results: str = "table"  # table: compact_records; json: json.dumps as most datasets store it
    tools: str = DEFAULT_TOOLS  # the system turn's text when it offers tools: Jinja of `system` and `tools`

    def _r(self, src: str, **ctx) -> str:
        return _env.from_string(src).render(**self.specials, **ctx)

    def bos_text(self) -> str:
        return self._r(self.bos)

    def end_text(self) -> str:
        return self._r(self.end)

    def parts(self, turn: Turn) -> tuple[str, str, str]:
        """(prefix, body + end, sep) for one turn."""
        prefix, body, end, sep = self.pieces(turn)
        return prefix, body + end, sep

    def pieces(self, turn: Turn) -> tuple[str, str, str, str]:
        """(prefix, body, end, sep) for one turn. The body holds the turn's text (a client's or a data
        file's): a renderer tokenizes it with special tokens off; the other three are the template's own."""
        if turn.role == "tool_call":
            body = self._r(self.tool_call, call=compact_json({"name": turn.name, "arguments": turn.arguments}))
        elif turn.role == "tool_result":
            records = (compact_records(turn.records) if self.tool_results == "table"
                       else json.dumps(turn.records, ensure_ascii=False))
            body = self._r(self.tool_result, records=records, name=turn.name)
        elif turn.role == "system" and turn.tools:
            body = self.system_with_tools(turn.content, turn.tools)
        else:
            body = turn.content
        return self._r(self.prefix[turn.role]), body, self.end_text(), self._r(self.sep)

    def system_with_tools(self, system: str, tools: list[dict]) -> str:
        """The system turn's text offering `tools` (OpenAI function specs) after `system` ('' for none)."""
        return self._r(self.tools, system=system, tools=tools)

    def generation_prefix(self) -> str:
        return self._r(self.prefix["assistant"])

    def parse_reply(self, text: str) -> Turn:
        """Generated text (up to, not including, the end marker) -> an assistant or tool_call Turn.

        A tool call that is not valid JSON comes back as a tool_call Turn with arguments None and the
        raw text in `content`, so the caller can answer it instead of crashing.
        """
        text = text.split(self.end_text())[0] if self.end_text() else text
        stripped = text.strip()
        if not stripped.startswith(TOOL_OPEN):
            return Turn("assistant", content=stripped)
        inner = stripped[len(TOOL_OPEN):].split(TOOL_CLOSE)[0]
        try:
            call = json.loads(inner)
        except json.JSONDecodeError:
            return Turn("tool_call", content=inner, arguments=None)
        if not isinstance(call, dict) or not isinstance(call.get("arguments"), dict):
            return Turn("tool_call", content=inner, name=str(call.get("name", "")) if isinstance(call, dict) else "", arguments=None)
        return Turn("tool_call", name=str(call.get("name", "")), arguments=call["arguments"])


@lru_cache
def _template_files() -> dict[str, dict]:
    out = {}
    for f in files("tunelab.data").joinpath("templates").iterdir():
        if f.name.endswith(".yaml"):
            spec = yaml.safe_load(f.read_text(encoding="utf-8"))
            out[spec["name"]] = spec
    return out


def template_names() -> list[str]:
    return sorted(_template_files())


TOOL_RESULT_FORMATS = ("table", "json")


def get_template(name: str, tokenizer=None, tool_results: str = "table") -> ChatTemplate:
    """A template by name; `auto` picks the one whose markers the tokenizer knows, else `plain`."""
    if tool_results not in TOOL_RESULT_FORMATS:
        raise ConfigError(f"data.tool_results '{tool_results}' is unknown; valid: {', '.join(TOOL_RESULT_FORMATS)}")
    specs = _template_files()
    if name == "auto":
        name = detect_template(tokenizer)
    if name not in specs:
        raise ConfigError(f"data.template '{name}' is unknown; valid: auto, {', '.join(specs)}")
    spec = dict(specs[name])
    specials = {
        "bos_token": (getattr(tokenizer, "bos_token", None) or "") if tokenizer else "",
        "eos_token": (getattr(tokenizer, "eos_token", None) or "") if tokenizer else "",
    }
    return ChatTemplate(specials=specials, tool_results=tool_results, **spec)


def detect_template(tokenizer) -> str:
    """The model's own chat template when it names known markers, else its vocabulary, else plain."""
    own = getattr(tokenizer, "chat_template", None) or ""
    vocab = tokenizer.get_vocab() if tokenizer is not None else {}
    for name, spec in _template_files().items():
        if any(m in own for m in spec["match"]):
            return name
    for name, spec in _template_files().items():
        if spec["match"] and all(m in vocab for m in spec["match"]):
            return name
    return "plain"
