"""Task evaluation: parse rendered turns and score predictions against gold turns."""

from tunelab.evaluate.metrics import (
    bleu4,
    classification_metrics,
    parse_rendered,
    read_predictions,
    render_turn,
    role_accuracy,
    rouge,
    score_file,
    score_items,
    slot_counts,
    slot_exact_match,
    slot_prf,
    tool_execution_match,
)

__all__ = [
    "bleu4",
    "classification_metrics",
    "parse_rendered",
    "read_predictions",
    "render_turn",
    "role_accuracy",
    "rouge",
    "score_file",
    "score_items",
    "slot_counts",
    "slot_exact_match",
    "slot_prf",
    "tool_execution_match",
]
