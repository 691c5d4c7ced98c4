"""Any local causal LM as a text generator for data jobs: a tunelab run, a preset, a model dir or a .gguf.

`raw` style tokenizes the prompt text as is (what a base model continues best); `chat` style sends it as
a user turn through the model's chat template (what an instruction-tuned run expects).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from tunelab.config.run_dir import CONFIG_FILE
from tunelab.config.schema import ModelConfig
from tunelab.data.schema import Turn
from tunelab.data.template import get_template
from tunelab.infer.batch import generate_batch, generate_ids
from tunelab.infer.engine import ChatEngine, GenerationOptions, load_engine
from tunelab.models import load_model

Style = Literal["auto", "raw", "chat"]
STYLES = ("auto", "raw", "chat")


class EngineGenerator:
    """Batched sampling from a ChatEngine; `complete` answers (text, ended by itself) per prompt."""

    def __init__(self, engine: ChatEngine, style: str, temperature: float = 0.7, top_p: float = 0.95,
                 batch_size: int = 8, is_run: bool = False):
        self.engine, self.style, self.is_run = engine, style, is_run
        self.temperature, self.top_p, self.batch_size = temperature, top_p, batch_size

    def reseed(self, seed: int) -> None:
        import torch

        torch.manual_seed(seed)

    def _ids(self, prompt: str) -> list[int]:
        r = self.engine.renderer
        if self.style == "chat":
            return r.prompt_ids([Turn("user", content=prompt)])
        bos = self.engine.tokenizer.bos_token_id
        return ([bos] if bos is not None else []) + r.text_ids(prompt)

    def complete(self, prompts: list[str], max_new_tokens: int, stop: list[str] | None = None,
                 greedy: bool = False) -> list[tuple[str, bool]]:
        """What the model writes after each prompt, cut before the first `stop` string, and whether it
        ended by itself (a stop) rather than at `max_new_tokens`."""
        if not prompts:
            return []
        opts = GenerationOptions(max_new_tokens=max_new_tokens, temperature=0.0 if greedy else self.temperature,
                                 top_p=self.top_p)
        texts, ended, _ = generate_ids(self.engine, [self._ids(p) for p in prompts], opts, self.batch_size,
                                       progress=False, stop_strings=stop)
        end = self.engine.template.end_text()
        return [(t.split(end)[0] if end else t, e) for t, e in zip(texts, ended)]

    def reply_turns(self, contexts: list[list[Turn]], max_new_tokens: int) -> list[Turn]:
        """The model's own next turn (a reply or a tool call) for each context, as chat or evaluate see it."""
        if not contexts:
            return []
        opts = GenerationOptions(max_new_tokens=max_new_tokens, temperature=self.temperature, top_p=self.top_p)
        return generate_batch(self.engine, contexts, opts, self.batch_size, progress=False)[0]


def is_run_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def open_generator(model: str, style: str = "auto", temperature: float = 0.7, top_p: float = 0.95,
                   batch_size: int = 8, trust_remote_code: bool = False, device: str | None = None) -> EngineGenerator:
    """A generator on a tunelab run (its adapter, template and system prompt; `auto` style: chat) or on a
    preset, model directory or .gguf (auto-detected template; `auto` style: raw)."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    run = is_run_dir(model)
    if run:
        engine = load_engine(model, device=device, trust_remote_code=trust_remote_code)
    else:
        m, tok, _ = load_model(ModelConfig(name_or_path=model, trust_remote_code=trust_remote_code), device)
        engine = ChatEngine(m, tok, get_template("auto", tok))
    if style == "auto":
        style = "chat" if run else "raw"
    return EngineGenerator(engine, style, temperature, top_p, batch_size, is_run=run)
