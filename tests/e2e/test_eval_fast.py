"""Evaluation decoding checks every item of a dialog in one draft pass, with one-at-a-time outputs.

Uses the float64 tiny models of tests/unit/test_dialog_decode.py (llama, and gemma with a sliding
window far shorter than a dialog), where any output difference is a bug, not a rounding tie.
"""

from __future__ import annotations

import pytest

from tests.unit.test_dialog_decode import dialog, engine, one_at_a_time  # noqa: F401 (engine: fixture)
from tunelab.infer import dialog as dialog_mod
from tunelab.infer.dialog import generate_dialogs
from tunelab.infer.engine import GenerationOptions


def test_each_dialog_takes_one_draft_pass(engine):  # noqa: F811
    opts = GenerationOptions(max_new_tokens=16)
    items = dialog(engine, "rpwrp", opts) + dialog(engine, "wprw", opts)
    preds, stats = generate_dialogs(engine, items, opts, batch_size=4, progress=False)
    assert preds == one_at_a_time(engine, items, opts)
    assert stats["draft_passes"] == 2  # one per dialog, not one per item (9)
    assert stats["items_from_draft"] >= 2 and 0 < stats["draft_tokens_accepted"] < stats["draft_tokens"]


@pytest.mark.parametrize("limit", ["CHAIN_TOKENS", "CHAIN_ROWS"])
def test_a_dialog_over_the_pass_limits_is_split_and_stays_exact(engine, monkeypatch, limit):  # noqa: F811
    opts = GenerationOptions(max_new_tokens=16)
    items = dialog(engine, "rpwrpw", opts)
    monkeypatch.setattr(dialog_mod, limit, 40)  # about one item per pass; a gold turn alone may exceed it
    preds, stats = generate_dialogs(engine, items, opts, batch_size=2, progress=False)
    assert preds == one_at_a_time(engine, items, opts)
    assert 3 <= stats["draft_passes"] <= 6
    assert stats["prompt_tokens_reused"] > 0.6  # split passes still extend the one cache


def test_no_gold_and_short_max_new_in_one_chain(engine):  # noqa: F811
    long_opts = GenerationOptions(max_new_tokens=24)
    items = dialog(engine, "rpwr", long_opts)
    items[1] = (items[1][0], None)  # no draft mid-dialog: one logits row there, the next prompt still extends it
    opts = GenerationOptions(max_new_tokens=3)  # drafts longer than max_new: every item settles from the drafts
    preds, stats = generate_dialogs(engine, items, opts, progress=False)
    assert preds == one_at_a_time(engine, items, opts)
    assert stats["draft_passes"] == 1 and stats["items_from_draft"] >= 2  # the model's own replies (r) settle
