"""Read an exported GGUF back through tunelab's own GGUF import and compare it with the merged model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunelab.data.schema import Turn
from tunelab.data.template import get_template
from tunelab.infer.engine import ChatEngine, GenerationOptions

PROMPTS = [
    "Find me a hotel with wifi under 500.",
    "What is the phone number of the Grand Hotel?",
    "I need a cheap hotel near the subway, rating above 4.",
    "Book something quiet with parking, please.",
    "帮我找一家有wifi的酒店，价格500以下。",
    "那家酒店的电话是多少？",
    "Hello!",
    "Thanks, that's all.",
]


@dataclass
class RoundTrip:
    prompts: int
    same_tokens: int  # greedy continuations token for token identical, given the same prompt ids
    same_prompt_ids: int  # the GGUF's tokenizer encodes the prompt exactly as the run's does
    first_token_agree: float  # share of prompts whose first generated token agrees
    details: list[dict] = field(default_factory=list)

    def line(self, quant: str) -> str:
        firsts = [d["first_diff"] for d in self.details if d.get("first_diff") is not None]
        where = f"; first differing token at position {min(firsts)} (earliest over prompts)" if firsts else ""
        return (f"round trip ({quant}): greedy tokens identical on {self.same_tokens}/{self.prompts} prompts; "
                f"tokenizer identical on {self.same_prompt_ids}/{self.prompts}{where}")


def first_diff(a: list[int], b: list[int]) -> int | None:
    """The first position where two generations differ (one ending early counts); None when identical."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def prompts_from_file(path: str | Path) -> list[str]:
    """Round-trip prompts from a file: `.txt`, one prompt a line (blank lines skipped); else a data file
    tunelab reads (hotel, messages, ...), each dialog's first user turn. DataError when it gives none."""
    from tunelab.config.schema import DataConfig
    from tunelab.data.dataset import read_data
    from tunelab.utils.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"--check-prompts-file {path}: no such file")
    if path.suffix == ".txt":
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        convs, _ = read_data(str(path), DataConfig())
        prompts = [next((t.content for t in c.turns if t.role == "user" and t.content), "") for c in convs]
        prompts = [p for p in prompts if p]
    if not prompts:
        raise DataError(f"--check-prompts-file {path}: no prompts (a .txt needs one a line; a data file, "
                        "dialogs with a user turn)")
    return prompts


def _greedy(engine: ChatEngine, ids: list[int], max_new_tokens: int) -> list[int]:
    import torch

    x = torch.tensor([ids])
    kw = engine.generate_kwargs(GenerationOptions(max_new_tokens=max_new_tokens))
    with torch.no_grad():
        out = engine.model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kw)
    return out[0, x.shape[1]:].tolist()


def load_gguf_engine(gguf_path: Path, like: ChatEngine) -> ChatEngine:
    """The GGUF as a ChatEngine with `like`'s template and system prompt, loaded through models.load."""
    from tunelab.config.schema import ModelConfig
    from tunelab.models import load_model

    model, tokenizer, _ = load_model(ModelConfig(name_or_path=str(gguf_path), dtype="float32"), "cpu")
    template = get_template(like.template.name, tokenizer, like.template.tool_results)
    return ChatEngine(model, tokenizer, template, like.renderer.system_prompt)


def round_trip(merged: ChatEngine, gguf_path: Path, prompts: list[str], max_new_tokens: int = 16) -> RoundTrip:
    """Greedy generations of the merged model against the GGUF read back, on the same prompt ids."""
    back = load_gguf_engine(gguf_path, merged)
    same = same_ids = first = 0
    details = []
    for text in prompts:
        turns = [Turn("user", content=text)]
        ids = merged.renderer.prompt_ids(turns)
        a, b = _greedy(merged, ids, max_new_tokens), _greedy(back, ids, max_new_tokens)
        ids_ok = back.renderer.prompt_ids(turns) == ids
        same, same_ids, first = same + (a == b), same_ids + ids_ok, first + (a[:1] == b[:1])
        details.append({"prompt": text, "merged": a, "gguf": b, "same_prompt_ids": ids_ok,
                        "first_diff": first_diff(a, b)})
    n = len(prompts)
    return RoundTrip(n, same, same_ids, first / n if n else 0.0, details)
