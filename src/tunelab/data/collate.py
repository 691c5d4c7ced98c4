"""Batching: right-pad ids with the pad token and labels with -100, or pack a batch into one row."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunelab.data.render import IGNORE


def flat(rows: list[dict]) -> tuple[list[dict], dict]:
    """A batch's rows with each `{"parts": [...]}` row (data.openings' steps) replaced by its parts, and the
    batch's `openings` count (for the trainer's meter; the loss reads only the model's inputs) where it has any."""
    parts = sum(len(r["parts"]) for r in rows if "parts" in r)
    return [part for r in rows for part in r.get("parts", (r,))], ({"openings": torch.tensor(parts)} if parts else {})


def _weights(rows: list[dict]) -> dict:
    if any("weight" in r for r in rows):
        return {"weights": torch.tensor([float(r.get("weight", 1.0)) for r in rows])}
    return {}


@dataclass
class PadCollator:
    pad_token_id: int
    pad_to_multiple_of: int = 1

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        rows, openings = flat(rows)
        longest = max(len(r["input_ids"]) for r in rows)
        m = self.pad_to_multiple_of
        longest = (longest + m - 1) // m * m
        ids = torch.full((len(rows), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), longest), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask, **_weights(rows), **openings}


@dataclass
class PackCollator:
    """All of a batch's conversations in one row of shape (1, total tokens): no padding.

    Position ids restart at 0 for each conversation; with no attention mask, transformers reads the
    restarts as sequence boundaries and builds a block-diagonal causal mask, so conversations never
    attend to each other. The boundaries also go out as `cu_seq_lens_q/k` and `max_length_q/k` (the
    flash-attention convention), which tunelab's packed attention (models/attention.py) uses instead of
    any mask. Labels need nothing special: a conversation's first token is never a target.
    Per-row loss weights become per-token weights (`token_weights`).
    """

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        rows, openings = flat(rows)
        ids = [t for r in rows for t in r["input_ids"]]
        labels = [t for r in rows for t in r["labels"]]
        pos = [p for r in rows for p in range(len(r["input_ids"]))]
        lengths = [len(r["input_ids"]) for r in rows]
        cu = torch.tensor([0] + lengths).cumsum(0).to(torch.int32)
        batch = {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                 "position_ids": torch.tensor([pos]), "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
                 "max_length_q": max(lengths), "max_length_k": max(lengths)}
        if any("weight" in r for r in rows):
            w = [float(r.get("weight", 1.0)) for r in rows for _ in r["input_ids"]]
            batch["token_weights"] = torch.tensor([w])
        return {**batch, **openings}
