"""Dev loss split at a position: how well a run predicts tokens past a context window and before it.

What long-context training (`model.rope_scaling`) is for: the loss on target tokens at positions at or
past `start` (the base model's window) against the loss on the ones before it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tunelab.config.run_dir import RunDir
from tunelab.data.dataset import read_data
from tunelab.infer.engine import load_engine

IGNORE = -100


def position_loss(run_dir: str | Path, data_file: str | list[str], start: int, device: str = "cpu",
                  max_samples: int = 0) -> dict:
    """Mean cross-entropy of the run's model over the target tokens of `data_file`'s dialogs, split at
    position `start`: {"past": loss at positions >= start, "within": before it, "tokens_past",
    "tokens_within"}; a side with no tokens has loss None. Dialogs are cut at the run's data.max_length."""
    engine = load_engine(run_dir, device=device)
    data_cfg = dataclasses.replace(RunDir.open(run_dir).config().data, max_samples=max_samples, format="auto")
    convs, _ = read_data(data_file, data_cfg)
    return engine_position_loss(engine, convs, start, data_cfg.max_length)


def engine_position_loss(engine, convs: list, start: int, max_length: int) -> dict:
    """`position_loss` for a loaded ChatEngine (a base model too: the zero-shot side of a comparison) over
    conversations rendered by its template and cut at `max_length` tokens."""
    import torch

    sums, counts = {"past": 0.0, "within": 0.0}, {"past": 0, "within": 0}
    with torch.no_grad():
        for conv in convs:
            enc = engine.renderer.encode(conv, max_length)
            if enc is None:
                continue
            ids = torch.tensor([enc.input_ids], device=engine.model.device)
            logits = engine.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, :-1].float()
            labels = torch.tensor(enc.labels[1:], device=logits.device)
            nll = torch.nn.functional.cross_entropy(logits, labels.clamp(min=0), reduction="none")
            position = torch.arange(1, len(enc.labels), device=logits.device)  # of the predicted token
            target = labels != IGNORE
            for side, where in (("past", position >= start), ("within", position < start)):
                sums[side] += float(nll[target & where].sum())
                counts[side] += int((target & where).sum())
    return {side: (sums[side] / counts[side] if counts[side] else None) for side in sums} | {
        f"tokens_{side}": counts[side] for side in counts}
