"""Read a data file and render it into training rows, with counts of what was dropped."""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.config.schema import DataConfig
from tunelab.data.readers import read_conversations
from tunelab.data.render import Renderer
from tunelab.data.schema import Conversation
from tunelab.utils.errors import DataError


@dataclass
class DatasetStats:
    conversations: int = 0
    skipped_invalid: int = 0  # bad rows skipped with data.skip_invalid
    too_long: int = 0  # not even one target fits in max_length
    truncated: int = 0  # old turns dropped to fit
    tokens: int = 0
    target_tokens: int = 0

    def line(self, name: str) -> str:
        return (f"{name}: {self.conversations} conversations, {self.tokens} tokens "
                f"({self.target_tokens} targets); truncated {self.truncated}, "
                f"dropped too long {self.too_long}, skipped invalid {self.skipped_invalid}")


def data_files(value: str | list[str]) -> list[str]:
    """data.train_file / dev_file as a list of paths: a string is one file, "" none."""
    if isinstance(value, str):
        return [value] if value else []
    return list(value)


def data_name(value: str | list[str]) -> str:
    """The file, or the files joined with ' + ', for messages."""
    return " + ".join(data_files(value)) or "''"


def read_data(path: str | list[str], cfg: DataConfig) -> tuple[list[Conversation], int]:
    """Parse and check every row (cheap: no tokenizer), so bad data fails before a model loads. A list of
    files is read in order and its rows concatenated; data.max_samples caps the total."""
    convs, skipped = [], 0
    for file in data_files(path):
        left = cfg.max_samples - len(convs) if cfg.max_samples else 0
        if cfg.max_samples and left <= 0:
            break
        rows, bad = read_conversations(file, cfg.format, cfg.skip_invalid, left)
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
        row = {"input_ids": enc.input_ids, "labels": enc.labels}
        weight = conv.meta.get("weight")
        if isinstance(weight, (int, float)) and not isinstance(weight, bool):
            row["weight"] = float(weight)  # per-row loss weight written by `tunelab data balance --mode weight`
        rows.append(row)
    stats.conversations = len(rows)
    if not rows:
        raise DataError(f"{data_name(path)}: no conversation fits data.max_length={cfg.max_length}")
    return rows, stats
