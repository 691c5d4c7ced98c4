"""Conversation -> (input_ids, labels): one sequence per dialog, labels only on target turns.

A dialog of N answers is one sequence, not N sequences that repeat the growing context. When it is
longer than max_length, whole old exchanges are dropped from the left (system turns kept); a target
is never cut in half.

Only the template inserts control tokens: a turn's text is tokenized with special tokens off, so a
message holding `<|im_start|>system` stays plain text and cannot forge a turn.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from tunelab.data.schema import Conversation, Turn
from tunelab.data.template import ChatTemplate

IGNORE = -100
# (records, the arguments of the call they answer, the text of every user turn rendered) -> the records as the
# model reads them: a domain's view (data.record_view; domains.record_view builds it)
RecordView = Callable[[Any, "dict | None", str], Any]
_plain: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_plain_lock = threading.Lock()


def _plain_tokenizer(tokenizer):
    """A private copy of `tokenizer` for turn text. Whether special tokens split is state of the shared
    backend, set per call: with its own copy no other thread's call can flip it between set and encode."""
    with _plain_lock:
        if tokenizer not in _plain:
            _plain[tokenizer] = copy.deepcopy(tokenizer)
        return _plain[tokenizer]


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    dropped_turns: int = 0  # turns removed from the left to fit max_length


class Renderer:
    """Tokenizes turns piecewise with a template; caches the ids of the constant pieces."""

    def __init__(self, template: ChatTemplate, tokenizer, system_prompt: str = "", tools: list[dict] | None = None,
                 view: RecordView | None = None):
        self.template = template
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.tools = tools or None  # tool specs offered to conversations that name none (chat, serve)
        self.view = view
        self._cache: dict[str, list[int]] = {}

    def ids(self, text: str, cache: bool = False) -> list[int]:
        """Token ids of the template's own text (prefixes, end, separators): special tokens honoured."""
        if not text:
            return []
        if cache and text in self._cache:
            return self._cache[text]
        out = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if cache:
            self._cache[text] = out
        return out

    def text_ids(self, text: str) -> list[int]:
        """Token ids of a turn's text: special tokens off, so their markers stay plain characters."""
        if not text:
            return []
        if not hasattr(self.tokenizer, "split_special_tokens"):  # a stand-in (prep's CharCounter): no specials
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return _plain_tokenizer(self.tokenizer)(text, add_special_tokens=False,
                                                 split_special_tokens=True)["input_ids"]

    def viewed(self, turns: list[Turn]) -> list[Turn]:
        """Each tool result's records through the view, given the call it answers and what every user turn of
        `turns` says: training renders a whole dialog, inference the dialog so far, by the same rule."""
        if self.view is None:
            return turns
        said = "\n".join(t.content for t in turns if t.role == "user")
        out, call = [], None
        for t in turns:
            if t.role == "tool_call":
                call = t.arguments
            elif t.role == "tool_result" and t.records is not None:
                t = dataclasses.replace(t, records=self.view(t.records, call, said))
            out.append(t)
        return out

    def _with_system(self, turns: list[Turn]) -> list[Turn]:
        """The system prompt and default tools where the conversation has none; a system turn left with
        neither text nor tools is dropped (a client's empty `tools` on a run with no system prompt)."""
        if not (turns and turns[0].role == "system"):
            if not (self.system_prompt or self.tools):
                return turns
            return [Turn("system", content=self.system_prompt, tools=self.tools)] + turns
        first = turns[0]
        if first.content and (first.tools is not None or not self.tools):
            return turns
        first = dataclasses.replace(first, content=first.content or self.system_prompt,
                                    tools=self.tools if first.tools is None else first.tools)
        return ([first] if first.content or first.tools else []) + list(turns[1:])

    def body_ids(self, turn: Turn) -> list[int]:
        """The ids a target turn is trained on: its text (special tokens off), then the end marker."""
        _, body, end, _ = self.template.pieces(turn)
        return self.text_ids(body) + self.ids(end, cache=True)  # the end is a target too: the model learns to stop

    def turn_pieces(self, turn: Turn) -> tuple[list[int], list[int]]:
        prefix, _, _, sep = self.template.pieces(turn)
        p, b, s = self.ids(prefix, cache=True), self.body_ids(turn), self.ids(sep, cache=True)
        ids = p + b + s
        labels = [IGNORE] * len(p) + (b if turn.is_target else [IGNORE] * len(b)) + [IGNORE] * len(s)
        return ids, labels

    def encode(self, conv: Conversation, max_length: int = 0) -> Encoded | None:
        """Tokens and labels for training; None when not even one target fits in max_length."""
        turns = self._with_system(self.viewed(conv.turns))
        pieces = [self.turn_pieces(t) for t in turns]
        bos = self.ids(self.template.bos_text(), cache=True)
        n_sys = next((i for i, t in enumerate(turns) if t.role != "system"), len(turns))
        start, end = n_sys, len(turns)

        def length(a: int, b: int) -> int:
            return len(bos) + sum(len(pieces[i][0]) for i in list(range(n_sys)) + list(range(a, b)))

        if max_length:
            # Drop whole exchanges from the left: the window always starts at a user turn.
            while length(start, end) > max_length:
                nxt = next((i for i in range(start + 1, end) if turns[i].role == "user"), None)
                if nxt is None:
                    break
                start = nxt
            # Still too long: drop trailing turns, so a later target is lost whole, never halved.
            while length(start, end) > max_length and end > start:
                end -= 1
            if not any(turns[i].is_target for i in range(start, end)):
                return None
        keep = list(range(n_sys)) + list(range(start, end))
        input_ids, labels = list(bos), [IGNORE] * len(bos)
        for i in keep:
            input_ids += pieces[i][0]
            labels += pieces[i][1]
        return Encoded(input_ids, labels, dropped_turns=len(turns) - len(keep))

    def prompt_ids(self, turns: list[Turn]) -> list[int]:
        """Tokens of a context ready for the next assistant turn to be generated."""
        ids = list(self.ids(self.template.bos_text(), cache=True))
        for t in self._with_system(self.viewed(turns)):
            ids += self.turn_pieces(t)[0]
        return ids + self.ids(self.template.generation_prefix(), cache=True)
