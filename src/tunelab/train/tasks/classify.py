"""`data.task: classify`: `text`/`label` rows -> a classifier run directory.

Two ways, picked by the model directory's config:
- an encoder (BERT-style): AutoModelForSequenceClassification with a fresh head, LoRA (task SEQ_CLS,
  the head trained in full through modules_to_save) or full fine-tuning, the standard cross-entropy;
- a causal LM: each row is the chat (user: text, assistant: label) trained by the SFT machinery, so
  the loss is on the label tokens only; a dev text is classified by the label whose tokens (and the
  end-of-turn marker) have the highest summed log-probability after the prompt - no free generation.

Both end with accuracy and macro F1 on data.dev_file, metrics.json and confusion.png in the run dir. The
causal way trains with every lever sft has (packing, bf16 weight storage, activation budget, compile).
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config import Config
from tunelab.data.dataset import encode_rows
from tunelab.data.labeled import as_conversations, check_labels, read_labeled
from tunelab.data.render import Renderer
from tunelab.data.schema import Turn
from tunelab.evaluate.metrics import classification_metrics
from tunelab.methods import TrainContext, get_method
from tunelab.models.load import load_tokenizer, pick_dtype, resolve_model_dir
from tunelab.train.precision import autocast
from tunelab.train.tasks.base import Prepared, Task, apply_method, load_causal, register_task
from tunelab.utils.errors import ConfigError, ModelError
from tunelab.utils.io import atomic_path, write_json
from tunelab.utils.log import log

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


# ----------------------------------------------------------------------------- the task


def _labels(cfg: Config):
    """(train pairs, dev pairs, label list), every row and label checked."""
    for key in ("train_file", "dev_file"):
        if not isinstance(getattr(cfg.data, key), str):
            raise ConfigError(f"data.{key} {getattr(cfg.data, key)!r}: task classify reads one file; a list of files "
                              "is for task sft")
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
    return train_pairs, dev_pairs, labels


def prepare(cfg: Config, device: str) -> Prepared:
    train_pairs, dev_pairs, labels = _labels(cfg)  # bad data fails before a model loads
    model_dir = resolve_model_dir(cfg.model.name_or_path)
    state = {"labels": labels, "dev_pairs": dev_pairs}
    if is_encoder(model_dir):
        from transformers import set_seed

        set_seed(cfg.train.seed)  # the new head's initial weights (and the adapter's)
        model, tokenizer = _load_encoder(cfg, model_dir, labels, device)
        model = _apply_encoder_method(model, cfg)
        label2id = {l: i for i, l in enumerate(labels)}
        train_rows = _encode_texts(tokenizer, train_pairs, label2id, cfg.data.max_length)
        dev_rows = _encode_texts(tokenizer, dev_pairs, label2id, cfg.data.max_length) if dev_pairs else None
        from transformers import DataCollatorWithPadding

        log.info(f"classify: sequence-classification head, labels {labels}")
        summary = {"task": "classify", "head": "sequence_classification", "labels": labels, "template": None,
                   "system_prompt": cfg.data.system_prompt, "train_rows": len(train_rows)}
        return Prepared(model, tokenizer, model_dir, get_method(cfg.method.name), train_rows, dev_rows,
                        causal=False, collator=DataCollatorWithPadding(tokenizer), summary=summary, state=state)
    method, model, tokenizer, model_dir, template, renderer = load_causal(cfg, device)
    train_rows, stats = encode_rows(cfg.data.train_file, (as_conversations(train_pairs, cfg.data.train_file), 0),
                                    cfg.data, renderer)
    dev_rows = None
    if dev_pairs:
        dev_rows, _ = encode_rows(cfg.data.dev_file, (as_conversations(dev_pairs, cfg.data.dev_file), 0),
                                  cfg.data, renderer)
    log.info(stats.line(f"train data ({template.name} template, label words; labels {labels})"))
    model = apply_method(cfg, method, model, device)
    summary = {"task": "classify", "head": "label_words", "labels": labels, "template": template.name,
               "system_prompt": cfg.data.system_prompt, "tool_results": cfg.data.tool_results,
               "packing": cfg.data.packing, "train_rows": len(train_rows), "train_data": stats.__dict__}
    return Prepared(model, tokenizer, model_dir, method, train_rows, dev_rows, template=template,
                    renderer=renderer, summary=summary, state=state)


def evaluate(cfg: Config, prepared: Prepared, run_dir: Path) -> dict | None:
    """Accuracy, macro F1 and the confusion matrix on data.dev_file (metrics.json, confusion.png)."""
    dev_pairs, labels = prepared.state["dev_pairs"], prepared.state["labels"]
    if not dev_pairs:
        log.info("no data.dev_file: no accuracy / macro F1 / confusion matrix")
        return None
    texts, golds = [t for t, _ in dev_pairs], [l for _, l in dev_pairs]
    device = next(prepared.model.parameters()).device.type
    with autocast(prepared.precision, device):  # frozen weights may be stored in bf16
        if prepared.causal:
            preds = predict_label_words(prepared.model, prepared.renderer, texts, labels, cfg.eval.batch_size)
        else:
            preds = predict_encoder(prepared.model, prepared.tokenizer, texts, labels, cfg.data.max_length,
                                    cfg.eval.batch_size)
    metrics = _evaluate(run_dir, golds, preds, labels)
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "n_items")}


TASK = register_task(Task("classify", "text classification: an encoder's head, or a causal LM's label words",
                          prepare, evaluate))
