"""Does a shipped chat template render a training dialog to the token ids training used?

Two paths are checked against `Renderer.encode` (what the model was trained on): the Jinja
`chat_template` written into an export (`jinja_mismatch`), and the path `tunelab serve` takes,
OpenAI messages -> Turns -> prompt ids (`served_mismatch`). Each returns None when they agree, else
one line naming the first differing token position.
"""

from __future__ import annotations

from tunelab.data import codec
from tunelab.data.render import Renderer
from tunelab.data.schema import Conversation, Turn
from tunelab.data.template import ChatTemplate

ARGS = {"name": "Grand Hotel", "price_range_upper": 500, "facilities": ["wifi", "parking"]}
RECORDS = [{"name": "Grand Hotel", "price": 450, "phone": "010-1234"}]


def training_dialog() -> Conversation:
    """A dialog with every role training renders: a request, a tool call, its result, answers."""
    return Conversation([
        Turn("user", content="Find me the Grand Hotel under 500, with wifi."),
        Turn("tool_call", name="search_hotels", arguments=ARGS),
        Turn("tool_result", name="search_hotels", records=RECORDS),
        Turn("assistant", content="Grand Hotel costs 450 a night; phone 010-1234."),
        Turn("user", content="Thanks!"),
        Turn("assistant", content="You're welcome."),
    ])


def jinja_messages(turns: list[Turn], template: ChatTemplate) -> list[dict]:
    """The dialog as a client of the Jinja template sends it: arguments as objects, tool results as the
    text training showed the model (a table or JSON, per data.tool_results)."""
    msgs = codec.turns_to_messages(turns)
    for m in msgs:
        for call in m.get("tool_calls") or []:
            call["function"]["arguments"] = codec.json_or_text(call["function"]["arguments"])
    results = iter(t for t in turns if t.role == "tool_result")
    for m in msgs:
        if m["role"] == "tool":
            t = next(results)
            m["content"] = template.pieces(t)[1]
    return msgs


def _describe(ids_a: list[int], ids_b: list[int], tokenizer, what: str) -> str | None:
    n = next((i for i, (a, b) in enumerate(zip(ids_a, ids_b)) if a != b), None)
    if n is None and len(ids_a) == len(ids_b):
        return None
    n = min(len(ids_a), len(ids_b)) if n is None else n

    def tok(ids):
        return repr(tokenizer.decode(ids[n:n + 3])) if n < len(ids) else "the end"

    return (f"{what} differs from training at token {n} of {len(ids_a)}: training has {tok(ids_a)}, "
            f"the template gives {tok(ids_b)}")


def jinja_mismatch(tokenizer, template: ChatTemplate, system_prompt: str, chat_template: str) -> str | None:
    """None when `chat_template` renders the training dialog to the training ids, else where it differs."""
    conv = training_dialog()
    expected = Renderer(template, tokenizer, system_prompt).encode(conv).input_ids
    text = tokenizer.apply_chat_template(jinja_messages(conv.turns, template), chat_template=chat_template,
                                         tokenize=False)
    got = tokenizer(text, add_special_tokens=False)["input_ids"]
    return _describe(expected, got, tokenizer, "the shipped chat template")


def served_mismatch(renderer: Renderer) -> str | None:
    """None when the prompt `tunelab serve` builds from OpenAI messages (before the last answer) is the
    start of the training ids, else where it differs."""
    turns = training_dialog().turns
    expected = renderer.encode(Conversation(turns)).input_ids
    context = codec.messages_to_turns(codec.turns_to_messages(turns[:-1]), strict=True)
    got = renderer.prompt_ids(context)
    return _describe(expected[:len(got)], got, renderer.tokenizer, "the served prompt")

