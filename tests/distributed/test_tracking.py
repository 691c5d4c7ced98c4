"""train.report_to: HF's tracker integrations get the losses, and tunelab's figures and resolved config go
to the same backends; mlflow and wandb stay inside the run directory, wandb offline. Read back with each
backend's own reader."""

from __future__ import annotations

import json

import pytest

from tests.distributed.helpers import losses, wandb_records, write_config
from tunelab.train.job import train

ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE", "WANDB_MODE", "WANDB_DIR", "WANDB_SILENT", "TENSORBOARD_LOGGING_DIR")


@pytest.fixture
def clean_env(monkeypatch):
    for k in ENV:  # set then deleted: monkeypatch restores each to unset, so no test inherits this run's paths
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)


def test_mlflow_and_wandb_records_in_the_run_dir(clean_env, tiny_llama, tmp_path):
    out = tmp_path / "run"
    train(str(write_config(tmp_path / "c.yaml", tiny_llama, out, max_steps=3, report_to=["mlflow", "wandb"])))

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(losses(out))
    assert run.data.metrics["tunelab/total_tokens_per_s"] > 0 and "tunelab/rank0/peak_mb" in run.data.metrics
    assert run.data.params["tunelab.method.r"] == "8" and run.data.params["tunelab.train.max_steps"] == "3"

    (offline,) = (out / "wandb").glob("offline-run-*/run-*.wandb")  # offline: nothing left this machine
    records = wandb_records(offline)
    config = {u.key: json.loads(u.value_json) for r in records if r.HasField("config") for u in r.config.update}
    assert config["tunelab"]["method"]["r"] == 8 and config["tunelab"]["train"]["report_to"] == ["mlflow", "wandb"]
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.HasField("history")]
    assert [h["train/loss"] for h in history if "train/loss" in h] == pytest.approx(losses(out))
    final = next(h for h in history if "tunelab/train_loss" in h)
    assert final["tunelab/train_loss"] == pytest.approx(json.loads((out / "run.json").read_text())["train_loss"])
    assert final["tunelab/rank0/tokens_per_s"] > 0
