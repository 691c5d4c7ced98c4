"""Read a data file and render it into training rows, with counts of what was dropped."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tunelab.config.schema import DataConfig
from tunelab.data.readers import read_conversations
from tunelab.data.render import Renderer
from tunelab.data.schema import Conversation
from tunelab.utils.errors import ConfigError, DataError


@dataclass
class DatasetStats:
    conversations: int = 0
    skipped_invalid: int = 0  # bad rows skipped with data.skip_invalid
    too_long: int = 0  # not even one target fits in max_length
    truncated: int = 0  # old turns dropped to fit
    tokens: int = 0
    target_tokens: int = 0
    openings: int = 0  # data.openings: conversation openings added, batched into opening_steps rows
    opening_steps: int = 0
    opening_tokens: int = 0

    def line(self, name: str) -> str:
        more = (f"; plus {self.openings} openings ({self.opening_tokens} tokens) in {self.opening_steps} steps"
                if self.openings else "")
        return (f"{name}: {self.conversations} conversations, {self.tokens} tokens "
                f"({self.target_tokens} targets); truncated {self.truncated}, "
                f"dropped too long {self.too_long}, skipped invalid {self.skipped_invalid}{more}")


def data_files(value: str | list) -> list[str]:
    """data.train_file / dev_file (or data.train_files) as a list of paths: a string is one file, "" none,
    a `{path, weight}` entry its path."""
    if isinstance(value, str):
        return [value] if value else []
    return [v["path"] if isinstance(v, dict) else v for v in value]


def check_mix(entries: list) -> list[dict]:
    """data.train_files checked: each entry `{path: str, weight: number > 0}` (weight defaults to 1);
    ConfigError naming the entry and what is valid."""
    out = []
    for i, e in enumerate(entries):
        where = f"data.train_files[{i}]"
        if isinstance(e, str):
            e = {"path": e}
        if not isinstance(e, dict) or not isinstance(e.get("path"), str) or not e["path"]:
            raise ConfigError(f"{where}: expected {{path: FILE, weight: NUMBER}}, got {e!r}")
        if unknown := sorted(set(e) - {"path", "weight"}):
            raise ConfigError(f"{where}: unknown key '{unknown[0]}'; valid keys: path, weight")
        w = e.get("weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise ConfigError(f"{where}: weight {w!r} must be a number > 0 (2: each row twice, 0.5: half the rows)")
        out.append({"path": e["path"], "weight": float(w)})
    return out


def train_source(cfg: DataConfig) -> str | list:
    """What a task reads for training: data.train_files (a weighted mix) or data.train_file, not both."""
    if cfg.train_files and cfg.train_file:
        raise ConfigError("data.train_file and data.train_files are both set; use one (train_files: [{path, weight}])")
    return check_mix(cfg.train_files) if cfg.train_files else cfg.train_file


def mix_weights(source: str | list) -> list[float] | None:
    """The weights of a mix (for the tokenization cache key); None for plain files."""
    if isinstance(source, list) and any(isinstance(v, dict) for v in source):
        return [v["weight"] if isinstance(v, dict) else 1.0 for v in source]
    return None


def weighted(convs: list[Conversation], weight: float, seed: int = 0) -> list[Conversation]:
    """A file's rows at `weight`: each row int(weight) times, plus that fraction of them drawn at random
    (seeded, so a run and its cache agree): 2.0 doubles a file's share, 0.5 halves it."""
    import random

    whole, frac = int(weight), weight - int(weight)
    extra = random.Random(seed).sample(convs, round(frac * len(convs))) if frac else []
    return convs * whole + extra


def data_name(value: str | list[str]) -> str:
    """The file, or the files joined with ' + ', for messages."""
    return " + ".join(data_files(value)) or "''"


def read_data(path: str | list[str], cfg: DataConfig) -> tuple[list[Conversation], int]:
    """Parse and check every row (cheap: no tokenizer), so bad data fails before a model loads. A list of
    files is read in order and its rows concatenated; data.max_samples caps the total."""
    convs, skipped = [], 0
    entries = path if isinstance(path, list) else data_files(path)
    for i, entry in enumerate(entries):
        file, weight = (entry["path"], entry["weight"]) if isinstance(entry, dict) else (entry, None)
        left = cfg.max_samples - len(convs) if cfg.max_samples else 0
        if cfg.max_samples and left <= 0:
            break
        rows, bad = read_conversations(file, cfg.format, cfg.skip_invalid, 0 if weight else left)
        if weight is not None:  # data.train_files: this file's share scaled by its weight, then capped
            rows = weighted(rows, weight, seed=i)[:left or None]
        convs += rows
        skipped += bad
    return convs, skipped


def encode_rows(
    path: str | list[str], data: tuple[list[Conversation], int], cfg: DataConfig, renderer: Renderer
) -> tuple[list[dict], DatasetStats]:
    convs, skipped = data
    stats = DatasetStats(skipped_invalid=skipped)
    rows = []
    for conv in convs:
        enc = renderer.encode(conv, cfg.max_length)
        if enc is None:
            stats.too_long += 1
            continue
        stats.truncated += enc.dropped_turns > 0
        stats.tokens += len(enc.input_ids)
        stats.target_tokens += sum(1 for x in enc.labels if x != -100)
        rows.append(_row(enc, conv))
    stats.conversations = len(rows)
    if not rows:
        raise DataError(f"{data_name(path)}: no conversation fits data.max_length={cfg.max_length}")
    if cfg.openings:
        rows += opening_rows(convs, cfg, renderer, stats)
    return rows, stats


def _row(enc, conv: Conversation) -> dict:
    row = {"input_ids": enc.input_ids, "labels": enc.labels}
    weight = conv.meta.get("weight")
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        row["weight"] = float(weight)  # per-row loss weight written by `tunelab data balance --mode weight`
    return row


def opening(conv: Conversation) -> Conversation | None:
    """`conv` up to its first target turn, when no tool result comes before that turn and more turns follow it
    (else the whole conversation is its own opening, or its first decision reads records); None otherwise."""
    for i, turn in enumerate(conv.turns):
        if turn.role == "tool_result":
            return None
        if turn.is_target:
            return Conversation(conv.turns[:i + 1], conv.source, conv.meta) if i + 1 < len(conv.turns) else None
    return None


def opening_rows(convs: list[Conversation], cfg: DataConfig, renderer: Renderer, stats: DatasetStats) -> list[dict]:
    """data.openings: the conversations' openings as rows (data.openings per conversation, in a seeded order),
    to go after the conversations' rows; `batch_openings` makes steps of them."""
    import random

    openings = [o for o in (opening(c) for c in convs) if o is not None]
    rows = []
    for conv in random.Random(0).sample(picked := weighted(openings, cfg.openings), len(picked)):
        enc = renderer.encode(conv, cfg.max_length)
        if enc is None or enc.dropped_turns:  # an opening longer than max_length: its conversation covers it
            continue
        rows.append(_row(enc, conv))
        stats.opening_tokens += len(enc.input_ids)
    stats.openings = len(rows)
    return rows


def batch_openings(rows: list[dict], stats: DatasetStats, per_step: int) -> list[dict]:
    """The conversations' rows, then the last `stats.openings` rows (the openings) batched `per_step` to a row
    `{"parts": [row, ...]}` by length, which the collators take as one batch: an extra step among the conversations
    (the trainer's sampler shuffles the steps).
    An opening is ~100 tokens where its conversation is ~500 (the hotel data), so such steps train the first request
    and the decision on it (reply or tool call, and the call's arguments) at a fraction of a conversation's cost."""
    if not stats.openings:
        return rows
    cut = len(rows) - stats.openings
    openings = sorted(rows[cut:], key=lambda r: len(r["input_ids"]))  # a step's openings alike in length: little padding
    steps = [{"parts": openings[i:i + per_step]} for i in range(0, len(openings), per_step)]
    stats.opening_steps = len(steps)
    return rows[:cut] + steps
