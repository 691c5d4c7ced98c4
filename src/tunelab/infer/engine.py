"""Load a run directory for inference and generate the next turn, streaming or not."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import tunelab.utils.offline  # noqa: F401
from tunelab.config import load_config
from tunelab.data.render import Renderer
from tunelab.data.schema import Turn
from tunelab.data.template import ChatTemplate, get_template
from tunelab.infer.rundir import inference_model_config, read_run_json, run_db
from tunelab.models import load_model
from tunelab.models.weights import verify_run_weights
from tunelab.utils.errors import ConfigError, ModelError


@dataclass
class GenerationOptions:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0


class ChatEngine:
    """A base model with a run's adapter, its tokenizer and the template it was trained with."""

    def __init__(self, model, tokenizer, template: ChatTemplate, system_prompt: str = "",
                 domain: str = "", db: str = ""):
        self.model = model.eval()
        self.domain, self.db = domain, db  # the run's tools, for the agent loop
        self.tokenizer = tokenizer
        self.template = template
        self.renderer = Renderer(template, tokenizer, system_prompt)
        self.stop_ids = self._stop_ids()

    def _stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        end = self.renderer.ids(self.template.end_text())
        if len(end) == 1:
            ids.add(end[0])
        return sorted(i for i in ids if i is not None)

    def _generate_kwargs(self, opts: GenerationOptions) -> dict:
        sample = opts.temperature > 0
        kw = dict(max_new_tokens=opts.max_new_tokens, do_sample=sample, eos_token_id=self.stop_ids,
                  pad_token_id=self.tokenizer.pad_token_id)
        if sample:
            kw.update(temperature=opts.temperature, top_p=opts.top_p)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw

    def stream(self, turns: list[Turn], opts: GenerationOptions | None = None) -> Iterator[str]:
        """Yield the next turn's text piece by piece, stopping at the end of the turn."""
        import torch
        from transformers import TextIteratorStreamer

        opts = opts or GenerationOptions()
        ids = torch.tensor([self.renderer.prompt_ids(turns)], device=self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                  **self._generate_kwargs(opts))
        thread = threading.Thread(target=lambda: self._generate_no_grad(kw), daemon=True)
        thread.start()
        yield from streamer
        thread.join()

    def _generate_no_grad(self, kw: dict):
        import torch

        with torch.no_grad():
            self.model.generate(**kw)

    def reply(self, turns: list[Turn], opts: GenerationOptions | None = None) -> Turn:
        """The next turn as a Turn: an assistant reply or a tool call."""
        import torch

        opts = opts or GenerationOptions()
        ids = torch.tensor([self.renderer.prompt_ids(turns)], device=self.model.device)
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      **self._generate_kwargs(opts))
        text = self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=False)
        return self.template.parse_reply(_strip_stop(text, self.tokenizer, self.stop_ids))


def _strip_stop(text: str, tokenizer, stop_ids: list[int]) -> str:
    for i in stop_ids:
        tok = tokenizer.convert_ids_to_tokens(i)
        if tok and tok in text:
            text = text.split(tok)[0]
    return text


def load_engine(run_dir: str | Path, device: str | None = None, merge: bool = False,
                trust_remote_code: bool = False, db: str | None = None) -> ChatEngine:
    """Everything comes from the run dir: its config (base model), template and adapter.

    merge=True folds a LoRA-style adapter into the base weights: same outputs, faster decoding, for
    jobs that serve one adapter only (evaluation). The run dir is untrusted input: only the caller's
    `trust_remote_code` runs model code (the run's config asking for it is ignored, with a warning),
    weights load from safetensors only, checked against run.json's checksums, and `db` (--db)
    overrides the run's database, which otherwise never depends on the current directory.
    """
    import torch
    from peft import PeftModel

    run_dir = Path(run_dir)
    has_adapter = (run_dir / "adapter_config.json").is_file()
    if not (run_dir / "config.yaml").is_file() or not (has_adapter or (run_dir / "config.json").is_file()):
        raise ConfigError(f"{run_dir}: not a finished tunelab run (needs config.yaml and an adapter or weights)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = load_config(run_dir / "config.yaml")
    run = read_run_json(run_dir)
    db = run_db(run_dir, cfg, run, db)
    verify_run_weights(run_dir, run.get("checksums"))
    if has_adapter and not (run_dir / "adapter_model.safetensors").is_file():
        raise ModelError(f"{run_dir / 'adapter_model.safetensors'}: missing; the adapter needs its safetensors weights")
    base = run.get("model_dir", cfg.model.name_or_path) if has_adapter else str(run_dir)  # full/freeze: own weights
    model, tokenizer, _ = load_model(inference_model_config(cfg, base, run_dir, trust_remote_code), device,
                                     use_safetensors=True)
    if has_adapter:
        try:
            model = PeftModel.from_pretrained(model, str(run_dir)).to(device)
        except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
            raise ModelError(f"{run_dir}: cannot load the adapter ({str(e)[:300]})") from None
        # prompt-learning adapters have nothing to fold in; LoRA, DoRA and IA3 do
        if merge and not model.peft_config["default"].is_prompt_learning:
            model = model.merge_and_unload()
    template = get_template(run.get("template", cfg.data.template), tokenizer, cfg.data.tool_results)
    return ChatEngine(model, tokenizer, template, run.get("system_prompt", cfg.data.system_prompt),
                      domain=cfg.data.domain, db=db)
