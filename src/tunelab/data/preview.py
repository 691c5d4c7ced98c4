"""One rendered training sample as text, its supervised spans marked: what the model reads and what it
learns to write (`tunelab data preview CONFIG`)."""

from __future__ import annotations

from tunelab.data.render import Encoded

OPEN, CLOSE = "[[", "]]"  # around every span whose tokens carry a label (the loss is computed there)


def spans(enc: Encoded) -> list[tuple[bool, list[int]]]:
    """The sequence cut into runs of tokens: (supervised, token ids), in order."""
    out: list[tuple[bool, list[int]]] = []
    for tok, label in zip(enc.input_ids, enc.labels):
        target = label != -100
        if out and out[-1][0] == target:
            out[-1][1].append(tok)
        else:
            out.append((target, [tok]))
    return out


def marked_text(enc: Encoded, tokenizer) -> str:
    """The decoded sequence, special tokens kept, each supervised span inside [[ and ]]."""
    parts = []
    for target, ids in spans(enc):
        text = tokenizer.decode(ids, skip_special_tokens=False)
        parts.append(f"{OPEN}{text}{CLOSE}" if target else text)
    return "".join(parts)


def preview_text(enc: Encoded, tokenizer, source: str = "") -> str:
    """A header (source, tokens, supervised tokens, dropped turns), then the marked sequence."""
    n_target = sum(1 for x in enc.labels if x != -100)
    head = (f"# {source}: {len(enc.input_ids)} tokens, {n_target} supervised (inside {OPEN} {CLOSE}), "
            f"{enc.dropped_turns} old turns dropped to fit")
    return head + "\n" + marked_text(enc, tokenizer)
