"""Self-Instruct with a local model: new instructions from a pool sample, their task type, their answers, a filter; iterated.

Each round samples the pool (seed tasks first, then a few kept ones), lets the model continue the list,
filters the new instructions (data/prep/self_instruct_filter.py), asks whether each is a classification
task, writes its answer (output-first for classification), and keeps what passes. In a domain mode
(`domain`, e.g. hotel) the new instructions are user requests and the answer is the domain's tool call:
a request is kept only when its call validates and returns records, and is written as a dialog
(user, tool call, tool result). Kept rows and rejected ones (with their reason) are appended line by
line, so a killed run resumes where it stopped, with its counts.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from tunelab.data.codec import turns_to_messages
from tunelab.data.prep.self_instruct_filter import FilterSettings, InstructionFilter, answer_reason
from tunelab.data.prep.self_instruct_prompts import (Seed, answer_prompt, call_prompt, instruction_prompt,
                                                     language, parse_answer, parse_call, parse_instructions,
                                                     parse_type, read_seeds, type_prompt)
from tunelab.data.schema import Turn
from tunelab.domains import DOMAINS, get_domain
from tunelab.utils.errors import ConfigError
from tunelab.utils.io import append_jsonl, read_jsonl_tolerant
from tunelab.utils.safety import check_output


@dataclass
class SelfInstructOptions:
    n: int = 20  # rows to have in OUT
    prompts_per_round: int = 4  # instruction-list prompts generated per round
    seed_shots: int = 6  # pool sample per prompt: seed tasks (the paper's 6) ...
    machine_shots: int = 2  # ... then kept ones (its 2)
    answer_shots: int = 3  # seed answers (or calls) shown before each new answer
    max_rounds: int = 50  # give up after this many rounds without reaching n
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    domain: str = ""  # '' : general tasks; a domain name: its requests and tool calls
    db: str = ""  # the domain's resource (the hotel database)
    rouge_threshold: float = 0.7
    near_threshold: float = 0.9

    def __post_init__(self):
        for name in ("n", "prompts_per_round", "seed_shots", "max_rounds", "max_new_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"self-instruct {name}={getattr(self, name)!r}: must be an integer >= 1")
        for name in ("rouge_threshold", "near_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"self-instruct {name}={getattr(self, name)!r}: must be in [0, 1]")


def rejected_path(out: Path) -> Path:
    """Where rejected candidates go, beside OUT (as `tunelab data clean` writes OUT.dropped.jsonl)."""
    return out.with_name(out.name + ".rejected.jsonl")


def row_instruction(row: dict) -> str:
    """The instruction (or first user request) a kept row was made from."""
    if "instruction" in row:
        return row["instruction"]
    return next((m.get("content", "") for m in row.get("messages", []) if m.get("role") == "user"), "")


class _Job:
    """One self-instruct run's state: pool, counts, output files, round."""

    def __init__(self, gen, seeds: list[Seed], out: Path, opts: SelfInstructOptions):
        self.gen, self.seeds, self.out, self.opts = gen, seeds, out, opts
        self.domain = get_domain(opts.domain) if opts.domain else None
        self.tools = self.domain.make_tools(opts.db) if self.domain else {}
        self.lang = language([s.instruction for s in seeds])
        self.filter = InstructionFilter(FilterSettings(opts.rouge_threshold, opts.near_threshold),
                                        pool=[s.instruction for s in seeds])
        kept = read_jsonl_tolerant(out) if out.exists() else []
        rejected = read_jsonl_tolerant(rejected_path(out)) if rejected_path(out).exists() else []
        self.machine = [row_instruction(r) for r in kept if isinstance(r, dict)]
        for text in self.machine:
            self.filter.add(text)
        self.counts = Counter(r.get("reason", "?") for r in rejected if isinstance(r, dict))
        self.kept = len(self.machine)
        rounds = [r.get("round", -1) for r in kept + rejected if isinstance(r, dict)]
        self.first_round = max(rounds, default=-1) + 1  # a resumed run samples new rounds, not the old ones

    def reject(self, text: str, reason: str, rnd: int, **detail) -> None:
        self.counts[reason] += 1
        append_jsonl(rejected_path(self.out), {"reason": reason, "instruction": text, "round": rnd, **detail})

    def keep(self, text: str, row: dict) -> bool:
        """Append `row` when `text` still passes against the pool (kept rows of this round included)."""
        reason = self.filter.commit(text)
        if reason is not None:
            self.reject(text, reason, row["round"])
            return False
        append_jsonl(self.out, row)
        self.machine.append(text)
        self.kept += 1
        return True

    # ---------------------------------------------------------------- steps 1-4 of a round

    def new_instructions(self, rng: random.Random, rnd: int) -> list[str]:
        o = self.opts
        pool = [s.instruction for s in self.seeds]
        prompts = []
        for _ in range(o.prompts_per_round):
            shots = rng.sample(pool, min(o.seed_shots, len(pool)))
            shots += rng.sample(self.machine, min(o.machine_shots, len(self.machine)))
            prompts.append(instruction_prompt(shots, self.lang, requests=self.domain is not None))
        fresh = []
        for text, ended in self.gen.complete(prompts, o.max_new_tokens, stop=["\n\n"]):
            whole = parse_instructions(text, self.lang, self.domain is not None, complete=ended)
            for cut in parse_instructions(text, self.lang, self.domain is not None)[len(whole):]:
                self.reject(cut, "truncated", rnd)  # the token limit may have cut it mid-sentence
            for inst in whole:
                reason, score = self.filter.check(inst)
                if reason is not None:
                    self.reject(inst, reason, rnd, **({"rouge_l": round(score, 3)} if reason == "rouge" else {}))
                elif inst not in fresh:
                    fresh.append(inst)
        return fresh

    def task_rows(self, insts: list[str], rng: random.Random, rnd: int) -> list[tuple[str, dict | None]]:
        o, lang = self.opts, self.lang
        types = [parse_type(t, lang) for t, _ in
                 self.gen.complete([type_prompt(i, lang) for i in insts], 4, stop=["\n"], greedy=True)]
        answered = [s for s in self.seeds if s.output]
        prompts = [answer_prompt(rng.sample(answered, min(o.answer_shots, len(answered))), i, c, lang)
                   for i, c in zip(insts, types)]
        out = []
        for inst, cls, (text, ended) in zip(insts, types, self.gen.complete(prompts, o.max_new_tokens, stop=["\n\n"])):
            parsed = parse_answer(text, cls, lang) if ended else None
            reason = ("answer_truncated" if not ended else "no_answer" if parsed is None
                      else answer_reason(*parsed))
            if reason is not None:
                self.reject(inst, reason, rnd, answer=text)
                continue
            out.append((inst, {"instruction": inst, "input": parsed[0], "output": parsed[1],
                               "is_classification": cls, "round": rnd, "source": "self-instruct"}))
        return out

    def call_rows(self, requests: list[str], rng: random.Random, rnd: int) -> list[tuple[str, dict | None]]:
        o = self.opts
        if self.gen.style == "chat":  # a run trained for the domain answers with its own tool call
            turns = self.gen.reply_turns([[Turn("user", content=r)] for r in requests], o.max_new_tokens)
            calls = [{"name": t.name, "arguments": t.arguments} if t.role == "tool_call" and t.arguments is not None
                     else None for t in turns]
        else:
            shots = [s for s in self.seeds if s.call]
            prompts = [call_prompt(rng.sample(shots, min(o.answer_shots, len(shots))), r, self.lang) for r in requests]
            calls = [parse_call(t) for t, _ in self.gen.complete(prompts, o.max_new_tokens, stop=["\n"])]
        out = []
        for req, call in zip(requests, calls):
            reason, records = self._run_call(call)
            if reason is not None:
                self.reject(req, reason, rnd, call=call, **({"error": records} if records else {}))
                continue
            turns = [Turn("user", content=req), Turn("tool_call", name=call["name"], arguments=call["arguments"]),
                     Turn("tool_result", name=call["name"], records=records)]
            out.append((req, {"messages": turns_to_messages(turns), "round": rnd, "source": "self-instruct"}))
        return out

    def _run_call(self, call: dict | None):
        """(None, records) for a call that validates and finds records; (reason, error text) otherwise."""
        if call is None:
            return "not_a_call", None
        if call["name"] not in self.tools:
            return "unknown_tool", None
        try:
            result = self.tools[call["name"]](call["arguments"])
        except Exception as e:  # a tool bug costs this candidate only
            return "tool_error", f"{type(e).__name__}: {e}"
        if not result.get("ok"):
            return "invalid_call", str(result.get("error"))
        return (None, result["records"]) if result.get("records") else ("no_records", None)


def self_instruct(model: str, seeds_file: str | Path, out: str | Path, opts: SelfInstructOptions | None = None,
                  style: str = "auto", batch_size: int = 8, trust_remote_code: bool = False,
                  progress: bool = True, generator=None) -> dict:
    """Append rows to `out` until it holds `opts.n` (or `opts.max_rounds` rounds end); return the counts:
    kept, each rejection reason, rounds run. `generator` (tests) replaces the model `model` names."""
    from tunelab.infer.generator import STYLES, open_generator

    opts = opts or SelfInstructOptions()
    if style not in STYLES:
        raise ConfigError(f"--style {style!r}: valid: {', '.join(STYLES)}")
    out = check_output(out, [seeds_file], "--out")
    seeds = read_seeds(seeds_file)
    if opts.domain and opts.domain not in DOMAINS:
        raise ConfigError(f"--domain {opts.domain!r} is unknown; valid: {', '.join(DOMAINS)}")
    if opts.domain and style != "chat" and not any(s.call for s in seeds) and not _is_chat_run(model, style):
        raise ConfigError(f"--seeds {seeds_file}: a domain mode needs seed dialogs whose first answer is a tool "
                          "call (e.g. the domain's synthesized train.jsonl)")
    out.parent.mkdir(parents=True, exist_ok=True)
    gen = generator or open_generator(model, style, opts.temperature, opts.top_p, batch_size, trust_remote_code)
    job = _Job(gen, seeds, out, opts)
    bar = tqdm(total=opts.n, initial=min(job.kept, opts.n), desc="self-instruct", unit="row", disable=not progress,
               dynamic_ncols=True)
    rounds = 0
    for rnd in range(job.first_round, job.first_round + opts.max_rounds):
        if job.kept >= opts.n:
            break
        rounds += 1
        rng = random.Random(f"{opts.seed}:{rnd}")
        gen.reseed(opts.seed * 1_000_003 + rnd)
        fresh = job.new_instructions(rng, rnd)
        rows = job.call_rows(fresh, rng, rnd) if job.domain else job.task_rows(fresh, rng, rnd)
        for text, row in rows:
            if job.kept >= opts.n:
                break
            if job.keep(text, row):
                bar.update(1)
        bar.set_postfix(round=rnd, rejected=sum(job.counts.values()), refresh=False)
    bar.close()
    return {"kept": job.kept, "rejected": dict(sorted(job.counts.items(), key=lambda kv: -kv[1])),
            "rounds": rounds, "out": str(out), "rejected_file": str(rejected_path(out))}


def _is_chat_run(model: str, style: str) -> bool:
    from tunelab.infer.generator import is_run_dir

    return style == "auto" and is_run_dir(model)
