"""Self-Instruct's prompts and the parsing of what a model writes back, as plain text (no model here).

Steps 1-3 of the notes: a numbered list of pool instructions that the model continues with new ones;
a few-shot question whether an instruction is a classification task; the answer (input-first for most
tasks, output-first for classification, so the labels are chosen before the inputs). In a domain mode
the answer is a tool call written as compact JSON after the request. Chinese seeds get Chinese prompts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tunelab.data.readers.base import read_rows
from tunelab.data.template import compact_json
from tunelab.utils.errors import DataError

_CJK = re.compile(r"[\u3400-\u9fff]")

WORDS = {  # the prompts' fixed words, per language
    "en": dict(sep=": ", header="Come up with a series of tasks:", request_header="Come up with a series of user requests:",
               task="Task", request="Request", input="Input", output="Output", label="Class label",
               none="<noinput>", call="Call", is_cls="Is it classification?", yes="Yes", no="No",
               cls_header="Can the following task be regarded as a classification task with finite output labels?"),
    "zh": dict(sep="：", header="请提出一系列任务：", request_header="请写出一系列用户请求：",
               task="任务", request="请求", input="输入", output="输出", label="类别", none="无",
               call="调用", is_cls="是否分类任务？", yes="是", no="否",
               cls_header="下面的任务能否看作输出标签有限的分类任务？"),
}
CLS_EXAMPLES = {  # (task, is classification): the fixed few-shot examples of step 2
    "en": [("Given my personality and the job, tell me if I would be suitable.", True),
           ("Give me an example of a time when you had to use your sense of humor.", False),
           ("Tell me if the sentiment of this review is positive or negative.", True),
           ("Write a short poem about the sea.", False)],
    "zh": [("判断这条评论的情感是正面还是负面。", True), ("写一首关于大海的短诗。", False),
           ("这封邮件是不是垃圾邮件？", True), ("给我讲一个关于坚持的小故事。", False)],
}


@dataclass
class Seed:
    instruction: str  # the task, or in a domain mode the user's request
    input: str = ""
    output: str = ""
    is_classification: bool | None = None
    call: dict | None = None  # domain mode: {"name", "arguments"} of the tool call answering the request


def language(texts: list[str]) -> str:
    """'zh' when most texts hold Chinese characters, else 'en'."""
    return "zh" if sum(bool(_CJK.search(t)) for t in texts) * 2 > len(texts) else "en"


def read_seeds(path: str | Path) -> list[Seed]:
    """Seed tasks: a .txt of one instruction a line, or rows of Self-Instruct's seed_tasks.jsonl
    (`instruction`, `instances`, `is_classification`), Alpaca (`instruction`/`input`/`output`), or any
    dialog format tunelab reads (its first user turn, and the tool call or reply after it)."""
    from tunelab.data.prep.rows import to_conversation

    path = Path(path)
    if not path.is_file():
        raise DataError(f"--seeds {path}: no such file")
    if path.suffix.lower() == ".txt":
        seeds = [Seed(line.strip()) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        seeds = []
        for n, row in read_rows(path):
            try:
                if isinstance(row, DataError):
                    raise row
                seeds.append(_seed_task(row) if isinstance(row, dict) and "instruction" in row
                             else _dialog_seed(to_conversation(row)[0].turns))
            except DataError as e:
                raise DataError(f"{path}:{n}: {e}") from None
    if not seeds:
        raise DataError(f"--seeds {path}: no seed tasks in it")
    return seeds


def _seed_task(row: dict) -> Seed:
    inst = row.get("instances") or [{}]
    first = inst[0] if isinstance(inst, list) and isinstance(inst[0], dict) else {}
    text = {k: row.get(k, first.get(k, "")) or "" for k in ("instruction", "input", "output")}
    if not all(isinstance(v, str) for v in text.values()):
        raise DataError("'instruction', 'input' and 'output' must be strings")
    cls = row.get("is_classification")
    return Seed(**text, is_classification=cls if isinstance(cls, bool) else None)


def _dialog_seed(turns) -> Seed:
    rest = [t for t in turns if t.role != "system"]
    if not rest or rest[0].role != "user":
        raise DataError("a seed dialog must start with a user turn")
    nxt = rest[1] if len(rest) > 1 else None
    if nxt is not None and nxt.role == "tool_call":
        return Seed(rest[0].content, call={"name": nxt.name, "arguments": nxt.arguments})
    return Seed(rest[0].content, output=nxt.content if nxt is not None else "")


# ---------------------------------------------------------------- step 1: new instructions

def instruction_prompt(examples: list[str], lang: str, requests: bool = False) -> str:
    """The pool sample as a numbered list whose next number the model is to continue."""
    w = WORDS[lang]
    label = w["request" if requests else "task"]
    lines = [w["request_header" if requests else "header"]]
    lines += [f"{label} {i}: {e}" if lang == "en" else f"{label}{i}：{e}" for i, e in enumerate(examples, 1)]
    lines.append(f"{label} {len(examples) + 1}:" if lang == "en" else f"{label}{len(examples) + 1}：")
    return "\n".join(lines)


def parse_instructions(text: str, lang: str, requests: bool = False, complete: bool = True) -> list[str]:
    """The instructions in a continuation of `instruction_prompt`; the last one is dropped when the
    generation was cut by its token limit (`complete=False`), as it may stop mid-sentence."""
    label = WORDS[lang]["request" if requests else "task"]
    if "\n\n" in text:  # a blank line ends the list: what follows is not part of it
        text, complete = text.split("\n\n")[0], True
    parts = re.split(rf"\n\s*(?:{label}|Task|任务)\s*\d+\s*[:：.、]", text)
    if not complete:
        parts = parts[:-1]
    return [" ".join(p.split()) for p in parts]


# ---------------------------------------------------------------- step 2: task type

def type_prompt(instruction: str, lang: str) -> str:
    w = WORDS[lang]
    shots = "".join(f"{w['task']}{w['sep']}{t}\n{w['is_cls']} {w['yes'] if c else w['no']}\n\n"
                    for t, c in CLS_EXAMPLES[lang])
    return f"{w['cls_header']}\n\n{shots}{w['task']}{w['sep']}{instruction}\n{w['is_cls']}"


def parse_type(text: str, lang: str) -> bool:
    """True when the model answered yes (anything else: not classification)."""
    first = text.strip().split("\n")[0].strip().lower()
    return first.startswith(WORDS[lang]["yes"].lower()) or first.startswith("yes")


# ---------------------------------------------------------------- step 3: the answer

def _shot(seed: Seed, w: dict, classification: bool) -> str:
    inp, c = seed.input or w["none"], w["sep"]
    if classification:
        return f"{w['task']}{c}{seed.instruction}\n{w['label']}{c}{seed.output}\n{w['input']}{c}{inp}\n\n"
    return f"{w['task']}{c}{seed.instruction}\n{w['input']}{c}{inp}\n{w['output']}{c}{seed.output}\n\n"


def answer_prompt(examples: list[Seed], instruction: str, classification: bool, lang: str) -> str:
    """Few-shot answers; the model continues after `Input:` (or `Class label:` for classification)."""
    w = WORDS[lang]
    shots = "".join(_shot(s, w, classification) for s in examples if s.output)
    return f"{shots}{w['task']}{w['sep']}{instruction}\n{w['label' if classification else 'input']}{w['sep'].strip()}"


def parse_answer(text: str, classification: bool, lang: str) -> tuple[str, str] | None:
    """(input, output) from a continuation of `answer_prompt`; None when the second field is missing."""
    w = WORDS[lang]
    text = re.split(rf"\n\s*(?:{w['task']}|Task)\s*[:：]", text)[0]
    second = w["input"] if classification else w["output"]
    m = re.search(rf"\n\s*{second}\s*[:：]", text)
    if m is None:
        return None
    first, rest = text[:m.start()].strip(), text[m.end():].strip()
    if classification:
        first, rest = rest, first  # output-first: the label came before the input
    return ("" if first in (w["none"], "<noinput>") else first), rest


# ---------------------------------------------------------------- domain mode: the tool call

def call_prompt(examples: list[Seed], request: str, lang: str) -> str:
    """Few-shot request -> tool call (compact JSON); the model writes the JSON after the last `Call:`."""
    w = WORDS[lang]
    c = w["sep"]
    shots = "".join(f"{w['request']}{c}{s.instruction}\n{w['call']}{c}{compact_json(s.call)}\n\n"
                    for s in examples if s.call)
    return f"{shots}{w['request']}{c}{request}\n{w['call']}{c}"


def parse_call(text: str) -> dict | None:
    """The first JSON object in `text` when it is {"name": str, "arguments": object}; None otherwise."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        call, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not isinstance(call.get("arguments"), dict):
        return None
    return {"name": call["name"], "arguments": call["arguments"]}
