"""Mixed precision: which dtype a run picks, that the trainer's loss runs in bf16, frozen weights stored in bf16."""

import pytest
import torch

from tunelab.train import precision
from tunelab.train.precision import resolve_mixed_precision
from tunelab.utils.errors import ConfigError

from tests.unit.test_loss import batch_and_model


@pytest.mark.parametrize("ratio", [1.65, 1.05])
def test_resolve(monkeypatch, ratio):
    monkeypatch.setattr(precision, "measured_bf16", lambda model, store=True: {"ratio": ratio})
    model = object()
    assert resolve_mixed_precision("auto", "cpu", "auto", model) == ("bf16" if ratio >= precision.BF16_MARGIN else "no",
                                                                     {"ratio": ratio})
    assert resolve_mixed_precision("no", "cpu", "auto", model) == ("no", None)
    assert resolve_mixed_precision("bf16", "cpu", "float32", model) == ("bf16", None)  # asked for: given
    assert resolve_mixed_precision("auto", "cpu", "float16", model) == ("no", None)  # fp16 weights: no bf16
    assert resolve_mixed_precision("auto", "cpu", "auto", None) == ("no", None)  # not a causal LM: fp32
    with pytest.raises(ConfigError, match="train.mixed_precision 'fp8' is unknown; valid: auto, bf16, no"):
        resolve_mixed_precision("fp8", "cpu", "auto")


def test_the_verdict_is_measured_once_per_machine_and_model(tiny_llama, tmp_path, monkeypatch):
    from tunelab.methods import TrainContext, get_method
    from tunelab.config import load_config
    from tunelab.models import load_model

    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))
    cfg = load_config(overrides={"model": {"name_or_path": str(tiny_llama)}})
    model = get_method("lora").apply(load_model(cfg.model, "cpu")[0], cfg.method, TrainContext("cpu", 1))
    calls = []
    real = precision.time_bf16_step
    monkeypatch.setattr(precision, "time_bf16", lambda shapes: {"matmul": 2.0, "attention": 1.5, "ratio": 2.0})
    monkeypatch.setattr(precision, "time_bf16_step", lambda m, **kw: calls.append(1) or real(m, **kw))
    first = precision.measured_bf16(model)
    again = precision.measured_bf16(model)
    assert len(calls) == 1 and not first["cached"] and again["cached"]
    assert first["ratio"] == again["ratio"] == first["step"] > 0 and first["fp32_s"] > 0
    assert all(p.grad is None for p in model.parameters())  # the probe leaves no gradients behind
    # it timed the bf16 step with the frozen weights in bf16, and put the fp32 ones back (the head still tied)
    lm = model.get_base_model()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert lm.lm_head.weight is lm.get_input_embeddings().weight or not lm.config.tie_word_embeddings
    assert (tmp_path / "bf16_verdicts.json").is_file()


@pytest.mark.parametrize("matmul", [0.13, 0.9])
def test_a_cpu_whose_bf16_matmul_is_slow_is_not_step_probed(monkeypatch, tmp_path, matmul):
    """On an AVX2-only CPU the bf16 step takes minutes: the matmul screen decides without it."""
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "model_shapes", lambda m: {"hidden": 64, "intermediate": 128, "heads": 2,
                                                              "head_dim": 32})
    monkeypatch.setattr(precision, "time_bf16", lambda shapes: {"matmul": matmul, "attention": 1.0, "ratio": matmul})
    stepped = []
    monkeypatch.setattr(precision, "time_bf16_step", lambda m, **kw: stepped.append(1) or {"step": 1.7})
    got = precision.measured_bf16(torch.nn.Linear(2, 2))
    assert stepped == ([] if matmul < precision.SCREEN_FLOOR else [1])
    assert got["ratio"] == (0.13 if matmul < precision.SCREEN_FLOOR else 1.7) and got["screen"]["matmul"] == matmul
    assert resolve_mixed_precision("auto", "cpu", "auto", torch.nn.Linear(2, 2))[0] == ("no" if stepped == [] else "bf16")


@pytest.mark.parametrize("bf16", [True, False])
def test_trainer_autocasts_the_loss(tiny_llama, sample_path, tmp_path, bf16):
    """The target-only loss calls the decoder apart from model.forward, which accelerate wraps: the
    trainer must autocast it itself, for training and for the dev loss."""
    from transformers import TrainingArguments

    from tunelab.train.trainer import SFTTrainer

    model, batch = batch_and_model(tiny_llama, sample_path)
    seen = []
    layer = model.get_base_model().model.layers[0].mlp.down_proj
    layer.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, bf16=bf16, report_to=[])
    trainer = SFTTrainer(model=model, args=args)
    model.train()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    assert seen == [torch.bfloat16 if bf16 else torch.float32] and loss.dtype == torch.float32
    model.eval()
    trainer.prediction_step(model, batch, prediction_loss_only=True)
    assert seen[-1] == (torch.bfloat16 if bf16 else torch.float32)
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_frozen_linears_in_bf16_give_the_same_step(tiny_llama, sample_path):
    """Autocast casts each frozen fp32 weight to bf16 per matmul; storing them in bf16 once gives the
    matmuls the same operands: same loss and LoRA gradients, exactly."""
    from tunelab.train.loss import lm_loss
    from tunelab.train.precision import store_frozen_linears

    def step(store: bool):
        model, batch = batch_and_model(tiny_llama, sample_path)
        n = store_frozen_linears(model, torch.bfloat16) if store else 0
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = lm_loss(model, batch)
        loss.backward()
        return model, n, loss, {k: p.grad for k, p in model.named_parameters() if p.requires_grad}

    plain, _, loss0, grads0 = step(False)
    stored, n, loss1, grads1 = step(True)
    layers = stored.get_base_model().model.layers
    assert n == 2 * 7 + 1  # every q,k,v,o,gate,up,down of both layers (LoRA's base layers included), the head
    assert layers[0].self_attn.q_proj.base_layer.weight.dtype == torch.bfloat16
    assert layers[0].self_attn.q_proj.lora_A["default"].weight.dtype == torch.float32  # trained: fp32
    assert layers[0].input_layernorm.weight.dtype == torch.float32
    base = stored.get_base_model()
    assert base.lm_head.weight.dtype == torch.bfloat16 and not base.lm_head.weight.requires_grad
    assert base.get_input_embeddings().weight.dtype == torch.float32  # the lookup keeps fp32 (untied if tied)
    assert torch.equal(loss0, loss1)
    assert grads0.keys() == grads1.keys() and all(torch.equal(grads0[k], grads1[k]) for k in grads0)
