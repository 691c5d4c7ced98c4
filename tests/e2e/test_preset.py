"""A real preset, end to end (slow, runs in CI): import the GGUF, train LoRA a few steps, reload, generate."""

import pytest
import torch

from tunelab.models import PRESETS
from tunelab.train.job import train
from tunelab.utils.errors import ModelError


@pytest.mark.slow
def test_smollm2_preset_trains_reloads_and_generates(sample_path, tmp_path):
    try:
        PRESETS["smollm2-135m-instruct"].locate()
    except ModelError as e:  # only when the preset package was never installed (make setup installs it)
        pytest.skip(str(e))
    out = tmp_path / "run"
    summary = train({
        "model": {"name_or_path": "smollm2-135m-instruct"},
        "data": {"train_file": str(sample_path), "max_length": 384, "max_samples": 2},
        "method": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "train": {"output_dir": str(out), "max_steps": 3, "learning_rate": 1e-3, "per_device_train_batch_size": 2},
    })
    assert summary["template"] == "chatml" and summary["steps"] == 3
    assert 0 < summary["train_loss"] < 20

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(summary["model_dir"], dtype=torch.float32)
    model = PeftModel.from_pretrained(base, out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]
