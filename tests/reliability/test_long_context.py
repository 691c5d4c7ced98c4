"""Long context: `model.rope_scaling` through the model config, recorded in run.json, honoured on load.

The tiny model gets a 128-position window by pretraining (full weights) on 128-token copy dialogs (the
assistant repeats the user's random letters), then LoRA on 256-token ones: copying now reaches twice as
far back. With linear factor 2 those distances look like the pretrained ones, so the dev loss on the
positions past 128 is far lower than without scaling.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tunelab.config import load_config
from tunelab.config.schema import RopeScaling
from tunelab.utils.errors import ConfigError, ModelError

ALPHA = "abcdefghijklmnop"
WINDOW = 128


def copy_dialogs(path: Path, n: int, length: int, seed: int) -> str:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        s = "".join(rng.choice(ALPHA) for _ in range(length))
        rows.append({"messages": [{"role": "user", "content": s}, {"role": "assistant", "content": s}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _train(base, train_file, out, method, max_length, steps, lr, scaling=None):
    from tunelab.train.job import train

    model = {"name_or_path": str(base)} | ({"rope_scaling": scaling} if scaling else {})
    return train({"model": model, "data": {"train_file": train_file, "max_length": max_length, "cache": False},
                  "method": {"name": method},
                  "train": {"output_dir": str(out), "max_steps": steps, "learning_rate": lr, "logging_steps": 50,
                            "per_device_train_batch_size": 8, "lr_scheduler_type": "constant",
                            "mixed_precision": "no"}})


@pytest.fixture(scope="module")
def windowed(tmp_path_factory) -> Path:
    """A tiny llama that has only ever seen 128 positions (max_position_embeddings 128)."""
    from tests.conftest import make_tiny_model

    root = tmp_path_factory.mktemp("long_context")
    base = make_tiny_model(root / "tiny")
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps(config | {"max_position_embeddings": WINDOW}))
    # 53 letters each way + the template's 21 tokens fill the window
    _train(base, copy_dialogs(root / "short.jsonl", 400, 53, 1), root / "pre", "full", WINDOW, 300, 3e-3)
    return root / "pre"


@pytest.fixture(scope="module")
def long_runs(windowed, tmp_path_factory):
    root = tmp_path_factory.mktemp("long_runs")
    long_file = copy_dialogs(root / "long.jsonl", 200, 117, 2)
    dev = copy_dialogs(root / "dev.jsonl", 16, 117, 3)
    runs = {name: root / name for name in ("plain", "linear")}
    _train(windowed, long_file, runs["plain"], "lora", 2 * WINDOW, 30, 2e-3)
    _train(windowed, long_file, runs["linear"], "lora", 2 * WINDOW, 30, 2e-3, {"type": "linear", "factor": 2})
    return runs, dev


def test_factor_2_lowers_the_loss_past_the_window(long_runs):
    from tunelab.evaluate.position_loss import position_loss

    runs, dev = long_runs
    plain, linear = (position_loss(runs[k], dev, WINDOW) for k in ("plain", "linear"))
    assert plain["tokens_past"] == linear["tokens_past"] > 1000  # every answer lies past the window
    assert linear["past"] < 0.5 * plain["past"], (linear, plain)


def test_scaling_is_recorded_and_honoured_on_load(long_runs, tmp_path):
    from tunelab.infer.engine import load_engine
    from tunelab.infer.export import export_merged
    from tunelab.serve.limits import default_max_prompt_tokens

    runs, _ = long_runs
    summary = json.loads((runs["linear"] / "run.json").read_text())
    assert summary["rope_scaling"] == {"type": "linear", "factor": 2.0, "base_context": WINDOW, "context": 256}
    assert json.loads((runs["plain"] / "run.json").read_text())["rope_scaling"] is None
    engine = load_engine(runs["linear"], device="cpu")  # what chat, evaluate and serve load
    assert engine.model.config.rope_parameters["rope_type"] == "linear"
    assert default_max_prompt_tokens(engine.model) == 256  # serve's and chat's prompt cap
    merged = export_merged(runs["linear"], tmp_path / "merged")
    assert json.loads((merged / "config.json").read_text())["rope_parameters"]["factor"] == 2.0


def test_bad_rope_scaling_is_one_line(tiny_gemma):
    from transformers import AutoConfig, Gemma3TextConfig, GPT2Config

    from tunelab.models.rope import apply_rope_scaling, context_length

    with pytest.raises(ConfigError, match="rope_scaling.type.*valid: none, linear, dynamic, yarn"):
        load_config(overrides=["--model.rope_scaling.type=ntk"])
    with pytest.raises(ConfigError, match="rope_scaling.factor.*>= 1"):
        load_config(overrides=["--model.rope_scaling.factor=0.5"])
    with pytest.raises(ConfigError, match="must be above 1"):
        apply_rope_scaling(AutoConfig.from_pretrained(tiny_gemma), RopeScaling("linear", 1.0))
    with pytest.raises(ModelError, match="no rotary position embedding"):
        apply_rope_scaling(GPT2Config(), RopeScaling("linear", 2.0))
    gemma = Gemma3TextConfig(num_hidden_layers=2, layer_types=["sliding_attention", "full_attention"],
                             max_position_embeddings=2048)  # scaled on its full-attention layers only
    apply_rope_scaling(gemma, RopeScaling("yarn", 4.0))
    full, sliding = gemma.rope_parameters["full_attention"], gemma.rope_parameters["sliding_attention"]
    assert (full["rope_type"], full["factor"], full["original_max_position_embeddings"]) == ("yarn", 4.0, 2048)
    assert sliding["rope_type"] == "default" and context_length(gemma) == 4 * 2048
