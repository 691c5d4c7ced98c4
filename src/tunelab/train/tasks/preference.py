"""`data.task: dpo | orpo | simpo | kto`: preference training on TRL's trainers, inside tunelab's one job.

Rows come from data/prefs.py; the prompt and each answer are rendered to text with the run's own chat
template (tool calls and tool results as in SFT), so the model learns preferences in the format it chats
in. The method registry applies as usual; with `model.adapter` (an SFT run) its adapter trains on and TRL
keeps a frozen copy of it as the DPO/KTO reference (one base model in memory). ORPO and SimPO need no
reference. The job's progress bar, time budget (and its learning-rate schedule), metrics.jsonl, loss plot,
checkpoints and run.json work as for SFT; the reward columns TRL logs land in metrics.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config import Config
from tunelab.data.dataset import data_files
from tunelab.data.prefs import PrefRow, read_prefs
from tunelab.data.render import Renderer
from tunelab.data.schema import Turn
from tunelab.models.compat_trl import compact_fused_head, pair_forward, scorable
from tunelab.train.precision import autocast
from tunelab.train.tasks.base import Prepared, Task, apply_method, load_causal, register_task
from tunelab.train.trainer import TokenMeter, budget_scheduler
from tunelab.utils.errors import ConfigError, DataError
from tunelab.utils.log import log

# methods whose model gives one logit per input token, as TRL's log-prob code assumes (prompt learning
# prepends virtual tokens; adalora reallocates ranks in a callback of its own and allows one trainable adapter)
PREF_METHODS = ("lora", "dora", "qlora", "ia3", "full", "freeze")
REWARD_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def _check(cfg: Config) -> None:
    task = cfg.data.task
    if cfg.method.name not in PREF_METHODS:
        raise ConfigError(f"method.name {cfg.method.name}: task {task} scores each answer token's log-probability, "
                          f"which needs one of {', '.join(PREF_METHODS)}")
    if cfg.data.packing:
        raise ConfigError(f"data.packing=true packs SFT conversations; task {task} batches its own pairs: set "
                          "data.packing=false")
    if cfg.train.activation_memory_mb:
        raise ConfigError(f"train.activation_memory_mb works in tunelab's SFT loss; task {task} runs TRL's: set it "
                          "to 0 (or use train.gradient_checkpointing)")
    if task == "kto" and cfg.train.per_device_train_batch_size < 2:
        raise ConfigError("train.per_device_train_batch_size 1: kto estimates its KL term from the other "
                          "completions of a batch; set it to 2 or more")


def _load_adapter(cfg: Config, model):
    """The SFT run's adapter on `model`, trainable; ConfigError when it is not an adapter of cfg.method."""
    from peft import PeftConfig, PeftModel

    path = Path(cfg.model.adapter)
    if not (path / "adapter_config.json").is_file():
        raise ConfigError(f"model.adapter '{path}': no adapter_config.json there (a run of a full or freeze method "
                          "saves whole weights: give it as model.name_or_path instead)")
    peft_cfg = PeftConfig.from_pretrained(str(path))
    name = "dora" if getattr(peft_cfg, "use_dora", False) else str(peft_cfg.peft_type.value).lower()
    if name != cfg.method.name and not (name == "lora" and cfg.method.name == "qlora"):
        raise ConfigError(f"model.adapter '{path}' is a {name} adapter; method.name is {cfg.method.name}: set "
                          f"method.name={name} to train it on")
    try:
        return PeftModel.from_pretrained(model, str(path), is_trainable=True)
    except (ValueError, RuntimeError, KeyError) as e:
        raise ConfigError(f"model.adapter '{path}': does not fit model {cfg.model.name_or_path} ({e})") from None


# ----------------------------------------------------------------------------- rendering


class PrefText:
    """Prompt and answers as the template's text: TRL tokenizes them (a tokenizer that adds its own BOS
    gets none from the template)."""

    def __init__(self, renderer: Renderer):
        self.r, self.t = renderer, renderer.template
        tok = renderer.tokenizer
        adds_bos = tok.bos_token_id is not None and tok("a")["input_ids"][:1] == [tok.bos_token_id]
        self.bos = "" if adds_bos else self.t.bos_text()
        self.specials = [s for s in tok.all_special_tokens if s]

    def _plain(self, text: str, source: str) -> str:
        # turn text is tokenized with special tokens honoured here: a control token in it could forge a turn
        for s in self.specials:
            if s in text:
                raise DataError(f"{source}: the text holds the special token {s!r}; remove it (it would forge a "
                                "turn boundary)")
        return text

    def prompt(self, turns: list[Turn], source: str) -> str:
        if self.r.system_prompt and not (turns and turns[0].role == "system"):
            turns = [Turn("system", content=self.r.system_prompt)] + turns
        out = [self.bos]
        for turn in self.r.viewed(turns):  # tool records as the SFT run read them (data.record_view)
            prefix, body, end, sep = self.t.pieces(turn)
            out += [prefix, self._plain(body, source), end, sep]
        return "".join(out) + self.t.generation_prefix()

    def answer(self, turn: Turn, source: str) -> str:
        _, body, end, _ = self.t.pieces(turn)
        return self._plain(body, source) + end  # the end marker is learned too: the model learns to stop

    def fitted_prompt(self, turns: list[Turn], answers: list[str], max_length: int, source: str):
        """(prompt text, whether turns were dropped): the prompt of `turns`, its oldest exchanges dropped (whole,
        from a user turn on; a system turn kept) until it and its longest answer fit `max_length` tokens;
        (None, True) when even the last exchange does not. TRL would otherwise cut the answers (DPO keeps the
        start) or nothing (ORPO keeps the prompt: an emptied completion averages 0/0 = NaN)."""
        tok = self.r.tokenizer
        # + 2: the BOS and EOS TRL may add around the text
        need = max(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers) + 2
        head = [t for t in turns[:1] if t.role == "system"]
        starts = [len(head)] + [i for i, t in enumerate(turns) if t.role == "user" and i > len(head)]
        for start in starts:
            text = self.prompt(head + turns[start:], source)
            if len(tok(text, add_special_tokens=False)["input_ids"]) + need <= max_length:
                return text, start > starts[0]
        return None, True


def _dataset(rows: list[PrefRow], text: PrefText, kind: str, max_length: int, name: str):
    """(dataset, {"shortened": prompts whose oldest exchanges were dropped, "too_long": rows skipped})."""
    from datasets import Dataset

    out, stats = [], {"shortened": 0, "too_long": 0}
    for r in rows:
        if kind == "pair":
            item = {"chosen": text.answer(r.chosen, r.source), "rejected": text.answer(r.rejected, r.source)}
        else:
            item = {"completion": text.answer(r.completion, r.source), "label": r.label}
        answers = [v for k, v in item.items() if k != "label"]
        prompt, shortened = text.fitted_prompt(r.prompt, answers, max_length, r.source)
        if prompt is None:
            stats["too_long"] += 1
            continue
        stats["shortened"] += shortened
        out.append({"prompt": prompt, **item})
    if not out:
        raise DataError(f"{name}: every row's last exchange and answer are longer than data.max_length={max_length} "
                        "tokens; raise data.max_length")
    if stats["too_long"] or stats["shortened"]:
        log.info(f"{name}: {stats['shortened']} prompts lost their oldest exchanges to fit data.max_length="
                 f"{max_length}; {stats['too_long']} rows skipped (their last exchange alone is longer)")
    return Dataset.from_list(out), stats


def _read(files, cfg: Config, kind: str, limit: int) -> list[PrefRow]:
    rows: list[PrefRow] = []
    for f in data_files(files):
        left = limit - len(rows) if limit else 0
        if limit and left <= 0:
            break
        rows += read_prefs(f, kind, cfg.data.skip_invalid, left)[0]
    return rows


# ----------------------------------------------------------------------------- the trainer


def _trl(task: str):
    """(trainer class, config class, the task's config fields) for `task`."""
    if task == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer, DPOConfig, {"loss_type": ["sigmoid"]}
    if task == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer, KTOConfig, {}
    if task == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer, ORPOConfig, {}
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    return CPOTrainer, CPOConfig, {"loss_type": "simpo", "cpo_alpha": 0.0}  # SimPO = CPO's simpo loss, no NLL term


def _metered(base, task: str):
    """`base` (a TRL trainer) with tunelab's token meter and time-budget learning-rate schedule, scoring only
    completion tokens under the run's autocast when `target_only` (models/compat_trl.py)."""

    class Metered(base):
        def __init__(self, *args, meter: TokenMeter | None = None, time_budget_s: float = 0.0,
                     target_only: bool = True, **kw):
            self.meter, self.time_budget_s, self.target_only = meter or TokenMeter(), time_budget_s, target_only
            super().__init__(*args, **kw)
            if target_only and task in ("dpo", "kto"):  # their fused LM head, patched onto the model above
                # the optional outputs TRL 1.16 asks its fused head for (metrics; DPO's WPO weights)
                outputs = ("entropy", "mean_logits") + (("is_top1",) if task == "dpo" else ()) + (
                    ("log_sum_sq_probs",) if getattr(self, "use_weighting", False) else ())
                compact_fused_head(self.model, outputs, self._autocast)
                if getattr(self, "ref_model", None) is not None:
                    compact_fused_head(self.ref_model, (), self._autocast)

        def _autocast(self):
            return autocast("bf16" if self.args.bf16 else "no", self.args.device.type)

        if task in ("orpo", "simpo"):
            def concatenated_forward(self, model, batch):
                if not (self.target_only and scorable(model)) or self.is_encoder_decoder or self.aux_loss_enabled:
                    return super().concatenated_forward(model, batch)
                with self._autocast():
                    return pair_forward(self, model, batch, orpo=task == "orpo")

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            scheduler = budget_scheduler(self, num_training_steps, optimizer)
            return scheduler if scheduler is not None else super().create_scheduler(num_training_steps, optimizer)

        def compute_loss(self, model, inputs, *args, **kw):
            with self._autocast():  # frozen linears stored in bf16 need it on every path (train/precision.py)
                loss = super().compute_loss(model, inputs, *args, **kw)
            if model.training:  # real tokens of every sequence in the batch (chosen and rejected alike)
                self.meter.tokens += sum(int(v.sum()) for k, v in inputs.items()
                                         if k.endswith("attention_mask") and hasattr(v, "sum"))
                self.meter.loss_sum += float((loss[0] if isinstance(loss, tuple) else loss).detach())
            return loss

        def prediction_step(self, *args, **kw):
            with self._autocast():
                return super().prediction_step(*args, **kw)

    Metered.__name__ = f"Metered{base.__name__}"
    return Metered


def _factory(trainer_cls, tokenizer):
    def make(model, args, train_dataset, eval_dataset, callbacks, meter, time_budget_s, target_only=True,
             **_sft_only):
        try:
            return trainer_cls(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                               processing_class=tokenizer, callbacks=callbacks, meter=meter,
                               time_budget_s=time_budget_s, target_only=target_only)
        except ValueError as e:  # TRL's refusal of a setting, as one line
            raise ConfigError(f"{trainer_cls.__name__.removeprefix('Metered')}: {e}") from None

    return make


def _drop_reference(model) -> None:
    # TRL's frozen "ref" copy of the adapter is not part of the result: only the trained adapter is saved
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")


# ----------------------------------------------------------------------------- the task


def prepare(cfg: Config, device: str) -> Prepared:
    _check(cfg)
    kind = "kto" if cfg.data.task == "kto" else "pair"
    train_rows = _read(cfg.data.train_file, cfg, kind, cfg.data.max_samples)  # bad data fails before a model loads
    dev_rows = _read(cfg.data.dev_file, cfg, kind, cfg.data.dev_max_samples) if cfg.data.dev_file else None
    method, model, tokenizer, model_dir, template, renderer = load_causal(cfg, device)
    text = PrefText(renderer)
    max_length = cfg.data.max_length
    train_ds, fit = _dataset(train_rows, text, kind, max_length, "data.train_file")
    dev_ds = _dataset(dev_rows, text, kind, max_length, "data.dev_file")[0] if dev_rows else None
    model = _load_adapter(cfg, model) if cfg.model.adapter else apply_method(cfg, method, model, device)
    base, args_cls, fields = _trl(cfg.data.task)
    p = cfg.pref
    fields = {**fields, "beta": p.beta, "max_length": cfg.data.max_length}
    if cfg.data.task == "simpo":
        fields["simpo_gamma"] = p.simpo_gamma
    if cfg.data.task == "kto":
        fields |= {"desirable_weight": p.desirable_weight, "undesirable_weight": p.undesirable_weight}
    log.info(f"{cfg.data.task} data: {len(train_rows)} train rows" + (f", {len(dev_rows)} dev" if dev_rows else "")
             + (f"; starting from {cfg.model.adapter}" if cfg.model.adapter else ""))
    summary = {"template": template.name, "system_prompt": cfg.data.system_prompt,
               "tool_results": cfg.data.tool_results, "start_adapter": cfg.model.adapter,
               "pref": {"beta": p.beta, "train_rows": len(train_rows), "dev_rows": len(dev_rows or []),
                        "shortened_prompts": fit["shortened"], "too_long": fit["too_long"]}}
    # causal_model: the bf16-autocast verdict is SFT's (the job times a step of this causal LM)
    return Prepared(model, tokenizer, model_dir, method, train_ds, dev_ds, causal=False, causal_model=True,
                    template=template, renderer=renderer, summary=summary,
                    trainer_factory=_factory(_metered(base, cfg.data.task), tokenizer),
                    args_cls=args_cls, task_args=fields, before_save=_drop_reference)


def evaluate(cfg: Config, prepared: Prepared, run_dir: Path) -> dict | None:
    """The last reward columns TRL logged (train, and dev when there is a dev file), from metrics.jsonl."""
    out: dict = {}
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.is_file() else []
    for prefix in ("", "eval_"):
        for key in REWARD_KEYS:
            vals = [r[prefix + key] for r in rows if isinstance(r.get(prefix + key), (int, float))]
            if vals:
                out[prefix + key] = round(vals[-1], 4)
    return out or None


for _name, _what in (("dpo", "direct preference optimisation against a frozen reference (chosen/rejected pairs)"),
                     ("orpo", "odds-ratio preference optimisation: SFT on chosen + odds-ratio penalty, no reference"),
                     ("simpo", "SimPO: length-normalised reward margin, no reference (TRL's CPO trainer)"),
                     ("kto", "Kahneman-Tversky optimisation on single completions labelled desirable or not")):
    register_task(Task(_name, _what, prepare, evaluate))
