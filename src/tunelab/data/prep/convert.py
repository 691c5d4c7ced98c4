"""`tunelab data convert`: any readable rows (JSONL, JSON, CSV, `datasets` dir) into messages,
hotel, alpaca or text-label rows, with CSV column mapping and a prompt template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.data.codec import turns_to_messages
from tunelab.data.prep.rows import Row, check_format, load_rows, to_conversation, write_rows
from tunelab.data.readers.hotel import TOOL_NAME
from tunelab.data.schema import Conversation, Turn
from tunelab.data.tools import tools_of
from tunelab.utils.errors import ConfigError, DataError
from tunelab.utils.safety import check_output

TARGETS = ("messages", "hotel", "alpaca", "text-label")
_PROMPT_KEYS = ("instruction", "prompt", "text")  # where a --prompt-template's text goes


def parse_columns(text: str | dict | None) -> dict[str, str]:
    """'question=instruction,answer=output' -> {"question": "instruction", "answer": "output"}."""
    if not text:
        return {}
    if isinstance(text, dict):
        return dict(text)
    out = {}
    for pair in text.split(","):
        src, sep, dst = pair.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise ConfigError(f"--columns '{text}': expected source=target pairs separated by commas")
        out[src.strip()] = dst.strip()
    return out


def map_row(data: Any, columns: dict[str, str], prompt_template: str | None, to: str, where: str) -> Any:
    """Rename columns per `columns` and put `prompt_template` (a format string over the original
    columns) in the prompt field: the first of instruction/prompt/text the row has, else
    "text" for text-label and "instruction" otherwise."""
    if not columns and not prompt_template:
        return data
    if not isinstance(data, dict):
        raise DataError(f"{where}: --columns/--prompt-template need object rows, got {type(data).__name__}")
    missing = [c for c in columns if c not in data]
    if missing:
        raise DataError(f"{where}: --columns names {', '.join(map(repr, missing))}, which this row lacks; "
                        f"columns: {', '.join(data)}")
    row = {columns.get(k, k): v for k, v in data.items()}
    if prompt_template:
        try:
            text = prompt_template.format_map(data)
        except KeyError as e:
            raise DataError(f"{where}: --prompt-template names {{{e.args[0]}}}, which this row lacks; "
                            f"columns: {', '.join(data)}") from None
        except (IndexError, ValueError) as e:
            raise ConfigError(f"--prompt-template '{prompt_template}' is not a valid format string ({e})") from None
        key = next((k for k in _PROMPT_KEYS if k in row), "text" if to == "text-label" else "instruction")
        row[key] = text
    return row


def row_conversation(data: Any, fmt: str = "auto") -> Conversation:
    """A row as a Conversation; a {"text", "label"} row reads as one question and its answer."""
    if fmt in ("auto", "text-label") and isinstance(data, dict) and "text" in data and "label" in data:
        if not isinstance(data["text"], str):
            raise DataError("'text' must be a string")
        meta = {k: v for k, v in data.items() if k not in ("text", "label")}
        label = data["label"] if isinstance(data["label"], str) else json.dumps(data["label"], ensure_ascii=False)
        return Conversation([Turn("user", content=data["text"]), Turn("assistant", content=label)], meta=meta)
    return to_conversation(data, fmt)[0]


def to_messages(conv: Conversation) -> dict:
    """OpenAI messages (data/codec.py): tool calls become assistant `tool_calls` (arguments as a JSON string)
    and results `role: tool` messages (records as JSON text), linked by call ids."""
    tools = tools_of(conv.turns)
    return {**conv.meta, "messages": turns_to_messages(conv.turns), **({"tools": tools} if tools else {})}


def to_hotel(conv: Conversation) -> dict:
    """The hotel dialog format: only search_hotels calls and results can be written."""
    dialog = []
    for i, t in enumerate(conv.turns):
        if t.role in ("tool_call", "tool_result") and t.name and t.name != TOOL_NAME:
            raise DataError(f"turn {i + 1} ({t.role}): tool '{t.name}' has no hotel form (only {TOOL_NAME})")
        if t.role == "tool_call":
            dialog.append({"role": "search", "arguments": t.arguments})
        elif t.role == "tool_result":
            dialog.append({"role": "return", "records": t.records})
        else:
            dialog.append({"role": t.role, "content": t.content})
    return {**conv.meta, "dialog": dialog}


def to_alpaca(conv: Conversation) -> dict:
    """instruction/output (+ system, + history of earlier question/answer pairs)."""
    turns = list(conv.turns)
    system = "\n\n".join(t.content for t in turns if t.role == "system")
    pairs = []
    rest = [t for t in turns if t.role != "system"]
    for i, t in enumerate(rest):
        if t.role not in ("user", "assistant"):
            raise DataError(f"turn {i + 1} ({t.role}): alpaca rows cannot hold tool calls; use --to messages")
    if len(rest) % 2 or any(t.role != ("user" if i % 2 == 0 else "assistant") for i, t in enumerate(rest)):
        raise DataError("alpaca rows need alternating user/assistant turns ending with an answer")
    for i in range(0, len(rest), 2):
        pairs.append([rest[i].content, rest[i + 1].content])
    row = {**conv.meta}
    if system:
        row["system"] = system
    row.update(instruction=pairs[-1][0], input="", output=pairs[-1][1])
    if len(pairs) > 1:
        row["history"] = pairs[:-1]
    return row


def to_text_label(conv: Conversation) -> dict:
    """{"text": the question, "label": the answer} from a one-question, one-answer conversation."""
    rest = [t for t in conv.turns if t.role != "system"]
    if [t.role for t in rest] != ["user", "assistant"]:
        raise DataError(f"text-label rows need one user turn and one answer; this row has {len(rest)} turns")
    return {**conv.meta, "text": rest[0].content, "label": rest[1].content}


_WRITERS = {"messages": to_messages, "hotel": to_hotel, "alpaca": to_alpaca, "text-label": to_text_label}


def convert_rows(rows: list[Row], to: str, columns: str | dict | None = None, prompt_template: str | None = None,
                 fmt: str = "auto", path: str | Path = "") -> list[dict]:
    """Each row mapped (columns, template), read as a Conversation and written as `to`; the first
    bad row raises DataError naming its file:line. Per-turn target flags (the `turns` export) and
    anything a target format has no place for are not carried over."""
    if to not in TARGETS:
        raise ConfigError(f"--to '{to}' is not one of {', '.join(TARGETS)}")
    check_format(fmt, ("text-label",))
    mapping = parse_columns(columns)
    out = []
    for r in rows:
        where = f"{path}:{r.line}"
        if r.error:
            raise DataError(f"{where}: {r.error}")
        data = map_row(r.data, mapping, prompt_template, to, where)
        try:
            if to == "text-label" and isinstance(data, dict) and "text" in data and "label" in data:
                out.append(data)  # already text-label: keep it as it is
            else:
                out.append(_WRITERS[to](row_conversation(data, fmt)))
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
    if not out:
        raise DataError(f"{path}: no rows")
    return out


def convert_file(inp: str | Path, out: str | Path, to: str, columns: str | dict | None = None,
                 prompt_template: str | None = None, fmt: str = "auto", to_datasets: bool = False) -> dict:
    """Convert `inp` to `out` (atomically): .jsonl, .json, .csv, or a `datasets` save_to_disk
    directory when OUT has no suffix or `to_datasets`. Returns {"rows", "to", "out"}."""
    check_output(out, [inp], "OUT")
    rows = convert_rows(load_rows(inp), to, columns, prompt_template, fmt, inp)
    write_rows(out, rows, to_datasets)
    return {"rows": len(rows), "to": to, "out": str(out)}
