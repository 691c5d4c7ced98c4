"""Every method x model family on tiny random models: trains with falling loss, saves, reloads, generates."""

import json
import re

import pytest

from tests.conftest import greedy_reply
from tunelab.data.schema import Turn
from tunelab.infer.engine import GenerationOptions, load_engine
from tunelab.train.job import train
from tunelab.utils.errors import ConfigError

# method overrides and learning rate: capacity differs by orders of magnitude across methods
METHODS = {
    "lora": ({"r": 16, "alpha": 32}, 3e-3),
    "dora": ({"r": 16, "alpha": 32}, 3e-3),
    "qlora": ({"r": 16, "alpha": 32}, 3e-3),
    "adalora": ({"r": 8, "target_r": 4, "alpha": 16}, 3e-3),
    "ia3": ({}, 3e-2),
    "prompt_tuning": ({"num_virtual_tokens": 8}, 3e-2),
    "p_tuning": ({"num_virtual_tokens": 8, "prompt_encoder": "MLP"}, 3e-3),
    "p_tuning_lstm": ({"num_virtual_tokens": 8, "prompt_encoder": "LSTM"}, 3e-3),
    "prefix_tuning": ({"num_virtual_tokens": 8}, 3e-3),
    "full": ({}, 1e-3),
    "freeze": ({"trainable_layers": 1}, 1e-3),
}


def run_cfg(model_dir, sample, out, name, overrides, lr):
    method = {"name": "p_tuning" if name.startswith("p_tuning") else name, "dropout": 0.0, **overrides}
    return {"model": {"name_or_path": str(model_dir)}, "data": {"train_file": str(sample), "max_length": 512},
            "method": method,
            "train": {"output_dir": str(out), "max_steps": 16, "learning_rate": lr, "logging_steps": 1,
                      "per_device_train_batch_size": 2, "lr_scheduler_type": "constant", "seed": 0}}


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gemma"])
@pytest.mark.parametrize("name", list(METHODS))
def test_method_trains_saves_reloads_generates(name, family, request, sample_path, tmp_path):
    if name == "qlora":
        pytest.importorskip("bitsandbytes")
    overrides, lr = METHODS[name]
    cfg = run_cfg(request.getfixturevalue(family), sample_path, tmp_path / "run", name, overrides, lr)
    summary = train(cfg)
    assert 0 < summary["trainable_params"] <= summary["total_params"]
    losses = [json.loads(l)["loss"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4, f"{name} on {family}: loss did not fall: {losses}"
    engine = load_engine(tmp_path / "run", device="cpu")
    turns = [Turn("user", content="你好")]
    reply = engine.reply(turns, GenerationOptions(max_new_tokens=6))
    # the reloaded model generates through the engine what a plain argmax loop over it gives; prompt-learning
    # adapters re-feed their virtual tokens each uncached step there, so only the first token is compared
    n = 1 if name in ("prompt_tuning", "p_tuning", "p_tuning_lstm", "prefix_tuning") else 6
    first = engine.reply(turns, GenerationOptions(max_new_tokens=n))
    expected = greedy_reply(engine, turns, n)
    assert (first.role, first.content, first.arguments) == (expected.role, expected.content, expected.arguments)
    assert len(engine.tokenizer(reply.content or "")["input_ids"]) <= 6 + 2  # max_new_tokens held


def test_adalora_ranks_change(tiny_llama, sample_path, tmp_path):
    overrides, lr = METHODS["adalora"]
    cfg = run_cfg(tiny_llama, sample_path, tmp_path / "run", "adalora", overrides, lr)
    cfg["train"]["max_steps"] = 30
    train(cfg)
    config = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    ranks = config.get("rank_pattern") or {}
    assert ranks, "AdaLoRA never reallocated its rank budget"
    kept = [sum(mask) if isinstance(mask, list) else mask for mask in ranks.values()]
    assert min(kept) < overrides["r"], f"no layer lost rank: {kept}"


def test_unknown_method_and_adalora_without_steps(tiny_llama, sample_path, tmp_path):
    with pytest.raises(ConfigError, match=re.escape("method.name: 'loraa' is not a valid choice (did you mean 'lora'?); valid: lora")):
        train(run_cfg(tiny_llama, sample_path, tmp_path / "a", "loraa", {}, 1e-3))
    cfg = run_cfg(tiny_llama, sample_path, tmp_path / "b", "adalora", {}, 1e-3)
    cfg["train"]["max_steps"] = -1
    with pytest.raises(ConfigError, match="adalora needs train.max_steps"):
        train(cfg)


def test_lora_on_the_last_layers_only_stops_backward_there(tiny_llama):
    """method.lora_layers=1: adapters on the last decoder layer only, and no gradient flows below it."""
    import torch

    from tunelab.config import load_config
    from tunelab.config.schema import MethodConfig
    from tunelab.methods import apply_method
    from tunelab.models import load_model

    model = load_model(load_config(overrides={"model": {"name_or_path": str(tiny_llama)}}).model, "cpu")[0]
    last = model.config.num_hidden_layers - 1
    model = apply_method(model, MethodConfig(name="lora", r=4, lora_layers=1))
    adapted = {int(n.split(".layers.")[1].split(".")[0]) for n, p in model.named_parameters() if p.requires_grad}
    assert adapted == {last}
    reached = []
    for i, layer in enumerate(model.get_base_model().model.layers):
        layer.register_full_backward_hook(lambda m, gi, go, i=i: reached.append(i))
    model(input_ids=torch.tensor([[1, 2, 3, 4]]), labels=torch.tensor([[1, 2, 3, 4]])).loss.backward()
    assert reached == [last]
    with pytest.raises(ConfigError, match=r"method.lora_layers must be in 0..2 \(this model's decoder layers\), got 3"):
        apply_method(load_model(load_config(overrides={"model": {"name_or_path": str(tiny_llama)}}).model, "cpu")[0],
                     MethodConfig(name="lora", r=4, lora_layers=3))


@pytest.mark.parametrize("name", ["lora", "dora", "ia3"])
def test_export_merged_generates_like_base_plus_adapter(name, tiny_llama, sample_path, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from tunelab.infer.export import export_merged

    overrides, lr = METHODS[name]
    train(run_cfg(tiny_llama, sample_path, tmp_path / "run", name, overrides, lr))
    engine = load_engine(tmp_path / "run", device="cpu")
    export_merged(tmp_path / "run", tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    ids = torch.tensor([engine.renderer.prompt_ids([Turn("user", content="电话是多少？")])])
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=engine.tokenizer.pad_token_id)
    with torch.no_grad():
        a = engine.model.generate(input_ids=ids, **kw)
        b = merged.generate(input_ids=ids, **kw)
        la = engine.model(input_ids=ids).logits
        lb = merged(input_ids=ids).logits
    assert torch.equal(a, b)
    torch.testing.assert_close(la, lb, rtol=1e-4, atol=1e-4)


# preference tasks x model family (lora): pairs the tiny model can learn to rank
PREF_TASKS = {"dpo": 3e-3, "orpo": 3e-3, "simpo": 3e-3, "kto": 3e-3}


def _pref_rows(task: str) -> list[dict]:
    rows = [{"messages": [{"role": "user", "content": f"电话是多少？{i}"}], "chosen": f"电话是010-6512889{i}。",
             "rejected": "不客气"} for i in range(8)]
    if task != "kto":
        return rows
    return [{"messages": r["messages"], "completion": r[k], "label": k == "chosen"} for r in rows
            for k in ("chosen", "rejected")]


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gemma"])
@pytest.mark.parametrize("task", list(PREF_TASKS))
def test_preference_task_trains_and_ranks(task, family, request, tmp_path):
    from tests.conftest import write_jsonl

    data = write_jsonl(tmp_path / "prefs.jsonl", _pref_rows(task))
    cfg = {"model": {"name_or_path": str(request.getfixturevalue(family))},
           "data": {"task": task, "train_file": str(data), "max_length": 128},
           "method": {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.0},
           "train": {"output_dir": str(tmp_path / "run"), "max_steps": 12, "learning_rate": PREF_TASKS[task],
                     "per_device_train_batch_size": 2, "lr_scheduler_type": "constant", "logging_steps": 1, "seed": 0}}
    summary = train(cfg)
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, f"{task} on {family}: loss did not fall: {losses}"
    rewards = summary["dev_metrics"]  # the last logged reward columns
    assert rewards["rewards/chosen"] > rewards["rewards/rejected"], rewards
    assert not (tmp_path / "run" / "ref").exists()  # TRL's frozen reference copy is not saved
    engine = load_engine(tmp_path / "run", device="cpu")  # the run chats like any LoRA run
    assert engine.reply([Turn("user", content="电话是多少？1")], GenerationOptions(max_new_tokens=4)).role == "assistant"


@pytest.mark.parametrize("ratio", [0.0, 16.0])
def test_loraplus_steps_the_b_factors_ratio_times_the_rate(ratio, tiny_llama, sample_path, tmp_path):
    """method.loraplus_lr_ratio: Adam's first step moves every weight by about its group's learning rate, so the
    B factors (zero at the start) end one step at lr x ratio (lr without LoRA+)."""
    from safetensors.torch import load_file

    cfg = run_cfg(tiny_llama, sample_path, tmp_path / "run", "lora", {"r": 4, "loraplus_lr_ratio": ratio}, 1e-3)
    cfg["train"].update(max_steps=1, max_grad_norm=0.0)
    train(cfg)
    weights = load_file(tmp_path / "run" / "adapter_model.safetensors")
    b = max(w.abs().max().item() for n, w in weights.items() if "lora_B" in n)
    assert b == pytest.approx(1e-3 * (ratio or 1.0), rel=0.02)


@pytest.mark.parametrize("name, key, value, words", [
    ("ia3", "loraplus_lr_ratio", 16.0, "method.loraplus_lr_ratio applies to dora, lora, qlora, not to method ia3"),
    ("full", "lora_layers", 1, "method.lora_layers applies to dora, lora, qlora, not to method full"),
    ("lora", "loraplus_lr_ratio", 0.5, "method.loraplus_lr_ratio must be 0 (off) or >= 1"),
])
def test_lora_options_refused_where_no_lora_factors_read_them(name, key, value, words, tiny_llama, sample_path,
                                                              tmp_path):
    cfg = run_cfg(tiny_llama, sample_path, tmp_path / "run", name, {key: value}, 1e-3)
    with pytest.raises(ConfigError, match=re.escape(words)):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_prefix_tuning_refuses_a_family_outside_its_list():
    """A family whose cache was never checked with a prefix (here a made-up one) is refused in one line."""
    from types import SimpleNamespace

    from tunelab.config.schema import MethodConfig
    from tunelab.methods.virtual_tokens import check_virtual_tokens

    model = SimpleNamespace(config=SimpleNamespace(model_type="made_up"))
    with pytest.raises(ConfigError, match="method prefix_tuning cannot run on made_up: its attention cache"):
        check_virtual_tokens(model, MethodConfig(name="prefix_tuning"), needs_plain_cache=True)
    check_virtual_tokens(model, MethodConfig(name="prompt_tuning"))  # the others need no prefix cache
