"""2 processes on this CPU (gloo) train one run: the same losses as one process over the same global batch,
one run dir written by rank 0, readable tensorboard records, a shared time budget, two "nodes" over the
loopback, and a rank that dies stops the job with one line instead of a hang."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.distributed.helpers import free_port, losses, popen, tunelab, wait_all, write_config
from tunelab.train.job import train


@pytest.fixture(scope="module")
def single(tiny_llama, tmp_path_factory):
    """The reference: one process, batch 2."""
    tmp = tmp_path_factory.mktemp("single")
    summary = train(str(write_config(tmp / "c.yaml", tiny_llama, tmp / "run", per_device_train_batch_size=2)))
    return tmp / "run", summary


def test_two_processes_match_one_and_leave_tensorboard_records(single, tiny_llama, tmp_path):
    out = tmp_path / "ddp"
    cfg = write_config(tmp_path / "c.yaml", tiny_llama, out)
    r = tunelab(["train", str(cfg), "--nproc", "2", "--train.report_to=[tensorboard]"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ref, ref_summary = single
    assert losses(out) == pytest.approx(losses(ref), abs=1e-4) and len(losses(out)) == 4
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and [x["rank"] for x in run["ranks"]] == [0, 1]
    assert sum(x["tokens"] for x in run["ranks"]) == ref_summary["tokens"]  # each rank saw its half
    assert run["total_tokens_per_s"] > 0 and all(x["peak_mb"] > 0 for x in run["ranks"])
    assert (out / "adapter_model.safetensors").is_file() and not list(tmp_path.glob("**/.*.tmp"))
    assert r.stderr.count("run saved to") <= 1  # rank 0 speaks for the job

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(out / "tensorboard"))
    ea.Reload()
    tags = ea.Tags()["scalars"]
    assert [e.value for e in ea.Scalars("train/loss")] == pytest.approx(losses(ref), abs=1e-4)
    for tag in ("train/tokens_per_s", "tunelab/total_tokens_per_s", "tunelab/rank1/peak_mb", "tunelab/train_loss"):
        assert tag in tags, tags
    assert "tunelab/config" in "".join(ea.Tags()["tensors"])


def test_fsdp_full_shard_matches_one_process(single, tiny_llama, tmp_path):
    out = tmp_path / "fsdp"
    cfg = write_config(tmp_path / "c.yaml", tiny_llama, out, fsdp="full_shard")
    r = tunelab(["train", str(cfg), "--nproc", "2"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert losses(out) == pytest.approx(losses(single[0]), abs=1e-4)
    from safetensors.torch import load_file

    adapter, ref = load_file(out / "adapter_model.safetensors"), load_file(single[0] / "adapter_model.safetensors")
    assert adapter.keys() == ref.keys()  # whole (gathered) LoRA weights, not one rank's shard
    assert all(adapter[k].shape == ref[k].shape for k in ref)


def test_time_budget_stops_every_rank_after_the_same_step(tiny_llama, tmp_path):
    out = tmp_path / "budget"
    cfg = write_config(tmp_path / "c.yaml", tiny_llama, out, max_steps=100000, time_budget_minutes=0.01)
    # ranks that stopped after different steps would leave one waiting in a collective until ddp_timeout
    r = tunelab(["train", str(cfg), "--nproc", "2", "--train.ddp_timeout=300"], tmp_path, timeout=90)
    assert r.returncode == 0, r.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["stopped_by_time_budget"] and 0 < run["steps"] < 100000


def test_two_nodes_over_loopback_train_one_run(single, tiny_llama, tmp_path):
    out = tmp_path / "nodes"
    cfg = write_config(tmp_path / "c.yaml", tiny_llama, out, per_device_train_batch_size=1)
    common = ["train", str(cfg), "--nproc", "1", "--nnodes", "2", "--master-addr", "127.0.0.1",
              "--master-port", str(free_port())]
    # each node logs to a file: a node whose unread pipe filled would block mid-run and hang the other
    logs = [tmp_path / f"node{i}.log" for i in (0, 1)]
    nodes = [popen(common + ["--node-rank", str(i)], tmp_path, log) for i, log in enumerate(logs)]
    codes = wait_all(nodes, timeout=240)
    assert codes == [0, 0], "".join(f"\n--- node {i}, exit {c}:\n" + log.read_text(errors="replace")[-2500:]
                                    for i, (c, log) in enumerate(zip(codes, logs)))
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2
    assert losses(out) == pytest.approx(losses(single[0]), abs=1e-4)


DIE = '''
import os
if os.environ.get("RANK") == "1" and os.environ.get("TUNELAB_TEST_DIE_AT_STEP"):
    import tunelab.train.trainer as t
    step = t.SFTTrainer.training_step
    def training_step(self, *a, **k):
        if self.state.global_step >= int(os.environ["TUNELAB_TEST_DIE_AT_STEP"]):
            os._exit(3)  # a rank lost mid-run (OOM-killed, node gone)
        return step(self, *a, **k)
    t.SFTTrainer.training_step = training_step
'''


def test_a_rank_that_dies_stops_the_others_with_one_line(tiny_llama, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DIE)
    cfg = write_config(tmp_path / "c.yaml", tiny_llama, tmp_path / "dies", max_steps=50)
    start = time.time()
    r = tunelab(["train", str(cfg), "--nproc", "2"], tmp_path, timeout=120, PYTHONPATH=str(hook),
                TUNELAB_TEST_DIE_AT_STEP="2")
    assert r.returncode == 2 and time.time() - start < 90
    assert r.stderr.strip().splitlines()[-1].startswith("tunelab: error: training failed in at least one of 2")
    assert not (tmp_path / "dies" / "run.json").exists()  # not a finished run


@pytest.mark.skipif(not os.environ.get("TUNELAB_TEST_DEEPSPEED"),
                    reason="DeepSpeed on CPU compiles its shm op on first use (about 4 min here): "
                           "set TUNELAB_TEST_DEEPSPEED=1 to run it")
def test_deepspeed_zero3_matches_one_process(single, tiny_llama, tmp_path):
    pytest.importorskip("deepspeed")
    out = tmp_path / "zero3"
    cfg = write_config(tmp_path / "c.yaml", tiny_llama, out, deepspeed="zero3")
    r = tunelab(["train", str(cfg), "--nproc", "2"], tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert losses(out) == pytest.approx(losses(single[0]), abs=1e-4)
    from safetensors.torch import load_file

    adapter, ref = load_file(out / "adapter_model.safetensors"), load_file(single[0] / "adapter_model.safetensors")
    assert all(adapter[k].shape == ref[k].shape for k in ref)  # gathered on save, not a ZeRO-3 shard
