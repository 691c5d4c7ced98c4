"""Bad scale-out input: one line naming the key and the valid values, exit 2, before any model loads (the
model path here does not exist: an error about it would mean the check came too late)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tunelab.cli.main import main

BASE = ["--model.name_or_path=/nonexistent/model", "--data.train_file=src/tunelab/data/samples/hotel_sample.jsonl"]


def run(capsys, *args):
    code = main(["train", "recipes/quickstart.yaml", *BASE, *args])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("args, needle", [
    (["--nproc", "0"], "--nproc: 0 is out of range; valid: >= 1"),
    (["--nproc", "2", "--nnodes", "2", "--node-rank", "2"], "--node-rank 2: valid: 0 .. 1"),
    (["--train.report_to=[tensorbord]"], "'tensorbord' is not a valid choice (did you mean 'tensorboard'?); valid: "
                                         "tensorboard, mlflow, wandb"),
    (["--train.fsdp=full"], "valid: , full_shard, shard_grad_op"),
    (["--train.fsdp=full_shard", "--train.deepspeed=zero2"], "train.fsdp and train.deepspeed both set"),
    (["--train.deepspeed=zero3", "--method.name=qlora"], "(ZeRO-3) cannot shard qlora's 4-bit base weights"),
    (["--train.fsdp=shard_grad_op", "--method.name=qlora"], "train.fsdp=shard_grad_op with method.name=qlora"),
    (["--train.deepspeed=zero9"], "train.deepspeed 'zero9': no such file"),
])
def test_bad_scale_out_input_is_one_line(capsys, args, needle):
    code, err = run(capsys, *args)
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_deepspeed_config_with_a_bad_stage(capsys, tmp_path):
    bad = tmp_path / "ds.json"
    bad.write_text(json.dumps({"zero_optimization": {"stage": 5}}))
    code, err = run(capsys, f"--train.deepspeed={bad}")
    assert code == 2 and "zero_optimization.stage 5; valid: 0, 1, 2, 3" in err


def test_missing_deepspeed_or_tracker_says_how_to_install(capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("deepspeed", "wandb") else real(name, *a))
    code, err = run(capsys, "--train.deepspeed=zero2")
    assert code == 2 and "DeepSpeed is not installed; pip install --no-build-isolation -e '.[deepspeed]'" in err
    code, err = run(capsys, "--train.report_to=[tensorboard, wandb]")
    assert code == 2 and "train.report_to: wandb is not installed; pip install -e '.[track]'" in err


def test_shipped_deepspeed_configs_leave_auto_values_to_the_config():
    from tunelab.train.distributed import read_deepspeed_config

    for name, stage in (("zero2", 2), ("zero3", 3)):
        conf = read_deepspeed_config(name)
        assert conf["zero_optimization"]["stage"] == stage
        # batch sizes, accumulation, clipping and precision come from train.*, never from the JSON
        assert all(conf[k] == "auto" for k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                                                 "gradient_clipping", "train_batch_size"))
