"""Batching: right-pad ids with the pad token and labels with -100."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunelab.data.render import IGNORE


@dataclass
class PadCollator:
    pad_token_id: int
    pad_to_multiple_of: int = 1

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
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
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if any("weight" in r for r in rows):
            batch["weights"] = torch.tensor([float(r.get("weight", 1.0)) for r in rows])
        return batch
