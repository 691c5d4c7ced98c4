"""`tunelab train` with `data.task: classify`: `text`/`label` rows -> a classifier run directory.

Two ways, picked by the model directory's config:
- an encoder (BERT-style): AutoModelForSequenceClassification with a fresh head, LoRA (task SEQ_CLS,
  the head trained in full through modules_to_save) or full fine-tuning, the standard cross-entropy;
- a causal LM: each row is the chat (user: text, assistant: label) trained by the SFT machinery, so
  the loss is on the label tokens only; a dev text is classified by the label whose tokens (and the
  end-of-turn marker) have the highest summed log-probability after the prompt - no free generation.

Both end with accuracy and macro F1 on data.dev_file, metrics.json and confusion.png in the run dir.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import tunelab.utils.offline  # noqa: F401
from transformers.trainer_callback import PrinterCallback

from tunelab.config import Config
from tunelab.data.collate import PadCollator
from tunelab.data.dataset import encode_rows
from tunelab.data.labeled import as_conversations, check_labels, read_labeled
from tunelab.data.render import Renderer
from tunelab.data.schema import Turn
from tunelab.data.template import get_template
from tunelab.evaluate.metrics import classification_metrics
from tunelab.methods import TrainContext, get_method, parameter_report
from tunelab.models import load_model
from tunelab.models.load import load_tokenizer, pick_dtype, resolve_model_dir
from tunelab.train.callbacks import MetricsLog, ProgressBar, TimeBudget, peak_rss_mb
from tunelab.config.run_dir import RunDir
from tunelab.train.job import _training_args, run_inputs
from tunelab.train.precision import resolve_mixed_precision
from tunelab.train.plot import plot_loss
from tunelab.train.trainer import SFTTrainer, TokenMeter
from tunelab.utils.errors import ConfigError, ModelError
from tunelab.utils.io import atomic_path, write_json
from tunelab.utils.log import log
from tunelab.utils.safety import check_output

ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta",
                 "deberta-v2", "mpnet", "camembert", "modernbert"}
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def is_encoder(model_dir: Path) -> bool:
    """True for a BERT-style encoder, False for a causal LM (by config.json's architectures/model_type)."""
    conf = json.loads((Path(model_dir) / "config.json").read_text())
    archs = conf.get("architectures") or []
    if any(a.endswith(CAUSAL_SUFFIXES) for a in archs) or conf.get("is_decoder"):
        return False
    return conf.get("model_type") in ENCODER_TYPES


# ----------------------------------------------------------------------------- way 1: encoder head


def _load_encoder(cfg: Config, model_dir: Path, labels: list[str], device: str):
    from transformers import AutoModelForSequenceClassification

    kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
              "label2id": {l: i for i, l in enumerate(labels)}, "dtype": pick_dtype(cfg.model.dtype, device),
              "trust_remote_code": cfg.model.trust_remote_code}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), **kwargs)
    except (OSError, ValueError) as e:
        raise ModelError(f"{model_dir}: cannot load a sequence classifier ({e})") from None
    return model.to(device), load_tokenizer(model_dir, cfg.model.trust_remote_code)


def _apply_encoder_method(model, cfg: Config):
    if cfg.method.name == "full":
        return get_method("full").apply(model, cfg.method, TrainContext())
    if cfg.method.name != "lora":
        raise ConfigError(f"method.name '{cfg.method.name}': an encoder classifier trains with lora or full")
    from peft import LoraConfig, get_peft_model

    from tunelab.methods.registry import check_targets

    targets = cfg.method.target_modules or ["query", "value"]
    check_targets(model, targets)
    # task_type SEQ_CLS: peft adds the head (classifier / score) to modules_to_save, trained in full
    return get_peft_model(model, LoraConfig(r=cfg.method.r, lora_alpha=cfg.method.alpha,
                                            lora_dropout=cfg.method.dropout, target_modules=targets,
                                            task_type="SEQ_CLS"))


def _encode_texts(tokenizer, pairs, label2id, max_length: int) -> list[dict]:
    limit = min(max_length, tokenizer.model_max_length or max_length)
    enc = tokenizer([t for t, _ in pairs], truncation=True, max_length=limit)
    return [{**{k: v[i] for k, v in enc.items()}, "labels": label2id[label]} for i, (_, label) in enumerate(pairs)]


def predict_encoder(model, tokenizer, texts: list[str], labels: list[str], max_length: int,
                    batch_size: int = 16) -> list[str]:
    import torch

    model.eval()
    device = next(model.parameters()).device
    limit = min(max_length, tokenizer.model_max_length or max_length)
    preds = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(texts[i:i + batch_size], truncation=True, max_length=limit, padding=True,
                          return_tensors="pt").to(device)
        with torch.no_grad():
            preds += model(**batch).logits.argmax(-1).tolist()
    return [labels[p] for p in preds]


# ----------------------------------------------------------------------------- way 2: label word


def predict_label_words(model, renderer: Renderer, texts: list[str], labels: list[str],
                        batch_size: int = 8) -> list[str]:
    """For each text, the label whose answer tokens (label + end marker) have the largest summed log-prob."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    pad = renderer.tokenizer.pad_token_id
    answers = [renderer.ids(renderer.template.parts(Turn("assistant", content=l))[1]) for l in labels]
    preds = []
    for i in range(0, len(texts), max(batch_size, 1)):
        seqs, spans = [], []  # spans: (start, end) of the answer tokens inside each sequence
        for text in texts[i:i + batch_size]:
            prompt = renderer.prompt_ids([Turn("user", content=text)])
            for ans in answers:
                seqs.append(prompt + ans)
                spans.append((len(prompt), len(prompt) + len(ans)))
        longest = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), longest), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, s in enumerate(seqs):
            ids[j, :len(s)] = torch.tensor(s)
            mask[j, :len(s)] = 1
        with torch.no_grad():
            logp = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().log_softmax(-1)
        scores = []
        for j, (a, b) in enumerate(spans):
            targets = ids[j, a:b].to(device)
            scores.append(logp[j, a - 1:b - 1].gather(-1, targets[:, None]).sum().item())
        for k in range(0, len(scores), len(labels)):
            row = scores[k:k + len(labels)]
            preds.append(labels[max(range(len(labels)), key=row.__getitem__)])
    return preds


# ----------------------------------------------------------------------------- report


def confusion_matrix(golds: list[str], preds: list[str], labels: list[str]) -> list[list[int]]:
    """rows: gold label, columns: predicted label, in `labels` order."""
    index = {l: i for i, l in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for g, p in zip(golds, preds):
        m[index[g]][index[p]] += 1
    return m


def plot_confusion(matrix: list[list[int]], labels: list[str], out_path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 2.5 + 0.5 * len(labels)
    fig, ax = plt.subplots(figsize=(size, size), dpi=110)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    peak = max(max(r) for r in matrix) or 1
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", color="white" if n > peak / 2 else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out_path


def _evaluate(run_dir: Path, golds: list[str], preds: list[str], labels: list[str]) -> dict:
    scores = {k: round(v, 4) for k, v in classification_metrics(golds, preds).items()}
    matrix = confusion_matrix(golds, preds, labels)
    metrics = {**scores, "n_items": len(golds), "labels": labels, "confusion": matrix}
    write_json(run_dir / "metrics.json", metrics)
    plot_confusion(matrix, labels, run_dir / "confusion.png",
                   f"accuracy {scores['accuracy']:.1f}, macro F1 {scores['macro_f1']:.1f}")
    print(f"dev: accuracy {scores['accuracy']:.2f}, macro F1 {scores['macro_f1']:.2f} ({len(golds)} items)")
    return metrics


# ----------------------------------------------------------------------------- the job


def train_classifier(cfg: Config) -> dict:
    """Train a classifier per `cfg` (data.task classify); return the run summary (also run.json)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.data.task != "classify":
        raise ConfigError(f"data.task '{cfg.data.task}' is not one of sft, classify")
    if not cfg.data.train_file:
        raise ConfigError("data.train_file is empty; set it in the config or with --data.train_file=PATH")
    check_output(cfg.train.output_dir, run_inputs(cfg), "train.output_dir")

    # 1. data, labels, model: everything that can fail on bad input fails before the run dir is touched
    train_pairs = read_labeled(cfg.data.train_file)
    if cfg.data.max_samples:
        train_pairs = train_pairs[:cfg.data.max_samples]
    labels = list(cfg.data.labels) or sorted({l for _, l in train_pairs})
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise ConfigError(f"data.labels {labels}: need at least 2 distinct labels")
    check_labels(cfg.data.train_file, train_pairs, labels)
    dev_pairs = []
    if cfg.data.dev_file:
        dev_pairs = read_labeled(cfg.data.dev_file, min_labels=1)
        check_labels(cfg.data.dev_file, dev_pairs, labels)
    model_dir = resolve_model_dir(cfg.model.name_or_path)
    encoder = is_encoder(model_dir)
    meter = TokenMeter()
    if encoder:
        model, tokenizer = _load_encoder(cfg, model_dir, labels, device)
        model = _apply_encoder_method(model, cfg)
        label2id = {l: i for i, l in enumerate(labels)}
        train_rows = _encode_texts(tokenizer, train_pairs, label2id, cfg.data.max_length)
        adapter, template, overrides = cfg.method.name == "lora", None, {}
    else:
        method = get_method(cfg.method.name)
        load_extra = method.load_kwargs(cfg.method, device) if method.load_kwargs else {}
        model, tokenizer, model_dir = load_model(cfg.model, device, **load_extra)
        template = get_template(cfg.data.template, tokenizer)
        renderer = Renderer(template, tokenizer, cfg.data.system_prompt)
        convs = as_conversations(train_pairs, cfg.data.train_file)
        train_rows, stats = encode_rows(cfg.data.train_file, (convs, 0), cfg.data, renderer)
        log.info(stats.line(f"train data ({template.name} template, label words)"))
        model = method.apply(model, cfg.method, TrainContext(device, cfg.train.max_steps))
        adapter = method.adapter
        overrides = method.train_overrides(device) if method.train_overrides else {}
    params = parameter_report(model)
    log.info(f"classify ({'sequence-classification head' if encoder else 'label words'}), method "
             f"{cfg.method.name}: {params['trainable_params']:,} trainable of {params['total_params']:,} "
             f"parameters; labels {labels}")
    precision = resolve_mixed_precision(cfg.train.mixed_precision, device, cfg.model.dtype)
    _training_args(cfg, device, False, overrides, precision, Path(cfg.train.output_dir))  # checked before writing

    # 2. run dir (a replaced run is staged beside the old one) and trainer
    run = RunDir.prepare(cfg.train.output_dir, cfg.train.overwrite, cfg.train.resume, run_inputs(cfg))
    run_dir = run.work
    args = _training_args(cfg, device, False, overrides, precision, run_dir)
    run.write_config(cfg)
    budget = TimeBudget(cfg.train.time_budget_minutes * 60, meter)
    callbacks = [ProgressBar(meter, budget.budget_s), MetricsLog(run_dir / "metrics.jsonl", meter), budget]
    if encoder:
        from transformers import DataCollatorWithPadding, Trainer

        trainer = Trainer(model=model, args=args, train_dataset=train_rows,
                          data_collator=DataCollatorWithPadding(tokenizer), callbacks=callbacks)
    else:
        trainer = SFTTrainer(model=model, args=args, train_dataset=train_rows,
                             data_collator=PadCollator(tokenizer.pad_token_id), meter=meter,
                             time_budget_s=budget.budget_s,
                             callbacks=callbacks + (method.callbacks(model) if method.callbacks else []))
    trainer.remove_callback(PrinterCallback)

    # 3. train
    start = time.time()
    result = trainer.train(resume_from_checkpoint=True if cfg.train.resume else None)
    train_s = time.time() - start

    # 4. save, then dev metrics
    model.save_pretrained(run_dir)
    tokenizer.save_pretrained(run_dir)
    summary = {
        "task": "classify", "head": "sequence_classification" if encoder else "label_words",
        "labels": labels, "base_model": cfg.model.name_or_path, "model_dir": str(model_dir),
        "method": cfg.method.name, "adapter": adapter, "template": template.name if template else None,
        "system_prompt": cfg.data.system_prompt, **params, "steps": trainer.state.global_step,
        "train_loss": result.training_loss, "train_time_s": round(train_s, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1), "stopped_by_time_budget": budget.hit,
        "train_rows": len(train_rows), "device": device,
    }
    if dev_pairs:
        texts, golds = [t for t, _ in dev_pairs], [l for _, l in dev_pairs]
        if encoder:
            preds = predict_encoder(model, tokenizer, texts, labels, cfg.data.max_length, cfg.eval.batch_size)
        else:
            preds = predict_label_words(model, renderer, texts, labels, cfg.eval.batch_size)
        metrics = _evaluate(run_dir, golds, preds, labels)
        summary["dev_metrics"] = {k: metrics[k] for k in ("accuracy", "macro_f1", "n_items")}
    else:
        log.info("no data.dev_file: no accuracy / macro F1 / confusion matrix")
    plot_loss(run_dir / "metrics.jsonl", run_dir / "loss.png")
    run.write_summary(summary)
    run_dir = run.commit()
    log.info(f"run saved to {run_dir}: train loss {result.training_loss:.4f}")
    return {"run_dir": str(run_dir), **summary}
