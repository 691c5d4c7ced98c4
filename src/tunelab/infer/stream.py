"""The one incremental parser of a streamed turn, shared by the terminal chat and the API.

Pieces come in as the model generates. Until the text can no longer become `<tool_call>` nothing is
shown; from then on it is a tool call (held whole, parsed at the end) or text (shown as it comes, cut at
the first stop string, holding back a tail that may be the start of one).
"""

from __future__ import annotations

from tunelab.data.template import TOOL_OPEN


class StopScanner:
    """Cuts streamed text at the first stop string; holds back a tail that may be the start of one."""

    def __init__(self, stops: list[str]):
        self.stops, self.buf, self.stopped = list(stops), "", False

    def feed(self, piece: str) -> str:
        """The text now safe to show."""
        if self.stopped:
            return ""
        self.buf += piece
        hits = [self.buf.find(s) for s in self.stops if s in self.buf]
        if hits:
            out, self.buf, self.stopped = self.buf[:min(hits)], "", True
            return out
        keep = max((k for s in self.stops for k in range(1, len(s)) if self.buf.endswith(s[:k])), default=0)
        cut = len(self.buf) - keep
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return out

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """(text up to the first stop string, whether one was found)."""
    hits = [text.find(s) for s in stops if s in text]
    return (text[:min(hits)], True) if hits else (text, False)


class TurnStream:
    """Feed generated pieces; `feed` and `finish` return the text to show now. `mode` is None while the turn
    could still be a tool call, then "tool" or "text"; `done` once a stop string ended the text."""

    def __init__(self, stops: list[str] = ()):
        self.scanner = StopScanner(list(stops))
        self.pieces: list[str] = []
        self.mode: str | None = None

    @property
    def raw(self) -> str:
        return "".join(self.pieces)

    @property
    def done(self) -> bool:
        return self.scanner.stopped

    def feed(self, piece: str) -> str:
        self.pieces.append(piece)
        if self.mode is None:
            head = self.raw.lstrip()
            if head.startswith(TOOL_OPEN):
                self.mode = "tool"
            elif head and not TOOL_OPEN.startswith(head):
                self.mode, piece = "text", head
            else:
                return ""  # could still become a tool call
        return self.scanner.feed(piece) if self.mode == "text" else ""

    def finish(self) -> str:
        """The rest to show once generation has ended (a turn still undecided was text)."""
        if self.mode == "tool":
            return ""
        out = self.scanner.feed(self.raw.lstrip()) if self.mode is None else ""
        self.mode = self.mode or "text"
        return out + self.scanner.flush()
