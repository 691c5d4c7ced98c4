"""Mixed precision: which dtype a run picks, and that the training loss (not the dev loss) runs in bf16."""

import pytest
import torch

from tunelab.train import precision
from tunelab.train.precision import resolve_mixed_precision
from tunelab.utils.errors import ConfigError

from tests.unit.test_loss import batch_and_model


@pytest.mark.parametrize("amx", [True, False])
def test_resolve(monkeypatch, amx):
    monkeypatch.setattr(precision, "cpu_has_bf16_matmul", lambda: amx)
    assert resolve_mixed_precision("auto", "cpu", "auto") == ("bf16" if amx else "no")
    assert resolve_mixed_precision("no", "cpu", "auto") == "no"
    assert resolve_mixed_precision("bf16", "cpu", "float32") == "bf16"  # asked for: given, fast or not
    assert resolve_mixed_precision("auto", "cpu", "float16") == "no"  # fp16 weights: no bf16 autocast
    with pytest.raises(ConfigError, match="train.mixed_precision 'fp8' is unknown; valid: auto, bf16, no"):
        resolve_mixed_precision("fp8", "cpu", "auto")


@pytest.mark.parametrize("bf16", [True, False])
def test_trainer_autocasts_training_loss_only(tiny_llama, sample_path, tmp_path, bf16):
    """The target-only loss calls the decoder apart from model.forward, which accelerate wraps: the
    trainer must autocast it itself. The dev loss stays fp32 either way."""
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
    assert seen[-1] == torch.float32
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
