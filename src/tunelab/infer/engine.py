"""Load a run directory for inference and generate the next turn, streaming or not."""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import tunelab.utils.offline  # noqa: F401
from tunelab.config.load import range_error
from tunelab.config.run_dir import RunDir
from tunelab.config.schema import EvalConfig
from tunelab.data.render import Renderer
from tunelab.data.schema import Turn
from tunelab.data.template import ChatTemplate, get_template
from tunelab.domains import record_view
from tunelab.models import load_model
from tunelab.models.compat import prompt_learning_generation
from tunelab.models.weights import verify_run_weights
from tunelab.utils.errors import ConfigError, ModelError


@dataclass
class GenerationOptions:
    """How one turn is generated; checked on creation, so a bad value is a ConfigError, never a hang."""

    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    max_prompt_tokens: int | None = None  # longer prompts raise PromptTooLong; None: no cap

    def __post_init__(self):
        bounds = {f.name: f.metadata["range"] for f in dataclasses.fields(EvalConfig)}  # one source of ranges
        for name in ("max_new_tokens", "temperature", "top_p"):
            value = getattr(self, name)
            error = "not a number" if not _real(value) else range_error(value, bounds[name])
            if error is None and name == "max_new_tokens" and not isinstance(value, int):
                error = "not an integer"
            if error is not None:
                raise ConfigError(f"generation option {name}={value!r}: {error}")
        if self.max_prompt_tokens is not None and (isinstance(self.max_prompt_tokens, bool) or not isinstance(
                self.max_prompt_tokens, int) or self.max_prompt_tokens < 1):
            raise ConfigError(f"generation option max_prompt_tokens={self.max_prompt_tokens!r}: must be an "
                              "integer >= 1 or None")


def _real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class PromptTooLong(ConfigError):
    """The prompt has more tokens than GenerationOptions.max_prompt_tokens allows."""

    def __init__(self, n_tokens: int, limit: int):
        super().__init__(f"the prompt has {n_tokens} tokens, over the limit of {limit}; "
                         "shorten the conversation or start a new one")
        self.n_tokens, self.limit = n_tokens, limit


class ChatEngine:
    """A base model with a run's adapter, its tokenizer and the template it was trained with."""

    def __init__(self, model, tokenizer, template: ChatTemplate, system_prompt: str = "",
                 domain: str = "", db: str = "", tools: list[dict] | None = None, record_view=None):
        prompt_learning_generation(model)  # prompt, p- and prefix tuning generate right (models/compat.py)
        self.model = model.eval()
        self.domain, self.db = domain, db  # the run's tools, for the agent loop
        self.tokenizer = tokenizer
        self.template = template
        # tools: the specs offered to a conversation that names none (the run's training tools)
        # record_view: how the run read tool records in training (data.record_view; domains.record_view)
        self.renderer = Renderer(template, tokenizer, system_prompt, tools, view=record_view)
        self.stop_ids = self._stop_ids()

    def _stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        end = self.renderer.ids(self.template.end_text())
        if len(end) == 1:
            ids.add(end[0])
        return sorted(i for i in ids if i is not None)

    def generate_kwargs(self, opts: GenerationOptions) -> dict:
        """The `generate` keyword arguments for `opts` (greedy or sampling, stop ids, pad id)."""
        sample = opts.temperature > 0
        kw = dict(max_new_tokens=opts.max_new_tokens, do_sample=sample, eos_token_id=self.stop_ids,
                  pad_token_id=self.tokenizer.pad_token_id)
        if sample:
            kw.update(temperature=opts.temperature, top_p=opts.top_p)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw

    def _prompt(self, turns: list[Turn], opts: GenerationOptions):
        import torch

        ids = self.renderer.prompt_ids(turns)
        if opts.max_prompt_tokens is not None and len(ids) > opts.max_prompt_tokens:
            raise PromptTooLong(len(ids), opts.max_prompt_tokens)
        return torch.tensor([ids], device=self.model.device)

    def stream(self, turns: list[Turn], opts: GenerationOptions | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the next turn's text piece by piece, stopping at the end of the turn.

        Generation stops within one decoding step once `cancel` is set or the consumer stops
        early (break, close); either way generation has ended when the generator is done. An error
        in generation (a sampling failure, say) is raised here, never a hang.
        """
        import torch
        from transformers import TextIteratorStreamer

        opts = opts or GenerationOptions()
        ids = self._prompt(turns, opts)
        stop = threading.Event()  # set when the consumer goes away
        # the timeout only lets the loop below notice a generation thread that died without a word
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=1.0)
        kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                  stopping_criteria=_stop_when(stop, cancel), **self.generate_kwargs(opts))
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self._generate_no_grad(kw)
            except BaseException as e:  # handed to the consumer; the streamer must still end
                failure.append(e)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True, name="tunelab-stream")
        thread.start()
        try:
            dead_once = False
            while True:
                try:
                    piece = next(streamer)
                except StopIteration:
                    break
                except queue.Empty:
                    if not thread.is_alive():
                        if dead_once:  # ended and nothing left in the queue: do not wait forever
                            break
                        dead_once = True
                    continue
                yield piece
        finally:
            stop.set()
            thread.join()
        if failure:
            raise failure[0]

    def _generate_no_grad(self, kw: dict):
        import torch

        with torch.no_grad():
            self.model.generate(**kw)

    def reply(self, turns: list[Turn], opts: GenerationOptions | None = None,
              cancel: threading.Event | None = None) -> Turn:
        """The next turn as a Turn: an assistant reply or a tool call.

        Setting `cancel` (from another thread) ends generation within one decoding step; the turn
        is then what was generated so far.
        """
        import torch

        opts = opts or GenerationOptions()
        ids = self._prompt(turns, opts)
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      stopping_criteria=_stop_when(cancel), **self.generate_kwargs(opts))
        text = self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=False)
        return self.template.parse_reply(_strip_stop(text, self.tokenizer, self.stop_ids))


def _stop_when(*events: threading.Event | None):
    """Stopping criteria (transformers' public API) that end generation once any of `events` is set."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    watched = [e for e in events if e is not None]

    class EventSet(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = any(e.is_set() for e in watched)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([EventSet()] if watched else [])


def _strip_stop(text: str, tokenizer, stop_ids: list[int]) -> str:
    for i in stop_ids:
        tok = tokenizer.convert_ids_to_tokens(i)
        if tok and tok in text:
            text = text.split(tok)[0]
    return text


def load_engine(run_dir: str | Path, device: str | None = None, merge: bool = False,
                trust_remote_code: bool = False, db: str | None = None, base_model: str | None = None) -> ChatEngine:
    """Everything comes from the run dir: its config (base model), template and adapter.

    merge=True folds a LoRA-style adapter into the base weights: same outputs, faster decoding, for
    jobs that serve one adapter only (evaluation). The run dir is untrusted input: only the caller's
    `trust_remote_code` runs model code (the run's config asking for it is ignored, with a warning),
    weights load from safetensors only, checked against run.json's checksums, and `db` (--db)
    overrides the run's database, which otherwise never depends on the current directory; `base_model`
    (--base-model) where the base model is, when not where run.json says (RunDir.base_model).
    """
    import torch
    from peft import PeftModel

    run = RunDir.open(run_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    db = run.db(db)
    verify_run_weights(run.path, run.summary().get("checksums"))
    model, tokenizer, _ = load_model(run.model_config(trust_remote_code, base_model), device, use_safetensors=True)
    has_adapter, run_dir = run.has_adapter, run.path
    if has_adapter:
        try:
            model = PeftModel.from_pretrained(model, str(run_dir)).to(device)
        except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
            raise ModelError(f"{run_dir}: cannot load the adapter ({str(e)[:300]})") from None
        # prompt-learning adapters have nothing to fold in; LoRA, DoRA and IA3 do
        if merge and not model.peft_config["default"].is_prompt_learning:
            model = model.merge_and_unload()
    cfg = run.config()
    template = get_template(run.template(), tokenizer, cfg.data.tool_results)
    return ChatEngine(model, tokenizer, template, run.system_prompt(), domain=cfg.data.domain, db=db,
                      tools=run.tools(), record_view=record_view(cfg.data.domain, cfg.data.record_view))
