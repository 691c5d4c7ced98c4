"""Scale-out through existing engines: torch distributed (DDP, FSDP) via HF Trainer / accelerate, and
DeepSpeed ZeRO. tunelab adds only the checks that fail before a model loads, the TrainingArguments that
turn them on, and per-rank figures.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import logging
import os
from pathlib import Path

from tunelab.config import Config
from tunelab.utils.dist import gather_object, rank, world_size
from tunelab.utils.errors import ConfigError

DEEPSPEED_DIR = Path(__file__).resolve().parents[3] / "recipes" / "deepspeed"  # the source tree's recipes
DEEPSPEED_PRESETS = ("zero2", "zero3")


def init_process_group(timeout_s: int) -> None:
    """Under torchrun / accelerate launch (WORLD_SIZE > 1): join the process group now, before the model
    loads (gloo on a CPU, nccl on GPUs, one GPU per local rank), so rank-0-first sections can use it.
    The Trainer reuses the same accelerate state."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return
    import torch
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available(), timeout=datetime.timedelta(seconds=timeout_s))
    if rank() != 0:  # rank 0 speaks for the job; the others print only warnings and errors
        logging.getLogger("tunelab").setLevel(logging.WARNING)


def deepspeed_config_path(value: str) -> Path:
    """The JSON file `train.deepspeed` names: a shipped preset (zero2, zero3) or a path."""
    return DEEPSPEED_DIR / f"{value}.json" if value in DEEPSPEED_PRESETS else Path(value).expanduser()


def read_deepspeed_config(value: str) -> dict:
    """The DeepSpeed config `value` names, checked: a JSON object whose zero_optimization.stage is 0-3."""
    path = deepspeed_config_path(value)
    if not path.is_file():
        raise ConfigError(f"train.deepspeed {value!r}: no such file {path}; valid: "
                          f"{', '.join(DEEPSPEED_PRESETS)} or a DeepSpeed JSON path")
    try:
        conf = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"train.deepspeed {path}: not valid JSON ({str(e)[:200]})") from None
    if not isinstance(conf, dict):
        raise ConfigError(f"train.deepspeed {path}: expected a JSON object")
    stage = (conf.get("zero_optimization") or {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"train.deepspeed {path}: zero_optimization.stage {stage!r}; valid: 0, 1, 2, 3")
    return conf


def check_scale_out(cfg: Config) -> None:
    """ConfigError for a combination that cannot run, before any model is loaded."""
    t = cfg.train
    for backend in t.report_to:
        if importlib.util.find_spec(backend) is None:
            raise ConfigError(f"train.report_to: {backend} is not installed; pip install -e '.[track]' "
                              f"(or remove {backend} from train.report_to)")
    if t.fsdp and t.deepspeed:
        raise ConfigError("train.fsdp and train.deepspeed both set: choose one (fsdp: full_shard, shard_grad_op; "
                          "deepspeed: zero2, zero3 or a JSON path)")
    if t.deepspeed:  # the config and the combination first: they are wrong whether or not DeepSpeed is installed
        stage = read_deepspeed_config(t.deepspeed).get("zero_optimization", {}).get("stage", 0)
        if stage == 3 and cfg.method.name == "qlora":
            raise ConfigError(f"train.deepspeed={t.deepspeed} (ZeRO-3) cannot shard qlora's 4-bit base weights; "
                              "use train.deepspeed=zero2, or method.name=lora")
        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(f"train.deepspeed={t.deepspeed}: DeepSpeed is not installed; pip install "
                              "--no-build-isolation -e '.[deepspeed]' (or set train.deepspeed='')")
    if t.fsdp and cfg.method.name == "qlora":
        raise ConfigError(f"train.fsdp={t.fsdp} with method.name=qlora: 4-bit weights are not sharded here; "
                          "set train.fsdp='' (DDP) or use method.name=lora")
    if (t.fsdp or t.deepspeed) and t.activation_memory_mb:
        raise ConfigError("train.activation_memory_mb checkpoints the decoder layers FSDP/DeepSpeed wrap; set "
                          "train.activation_memory_mb=0 with train.fsdp or train.deepspeed")


def scale_out_args(cfg: Config, layer_class: str | None) -> dict:
    """TrainingArguments for FSDP or DeepSpeed (empty for plain DDP or one process)."""
    t = cfg.train
    if t.fsdp:
        if layer_class is None:
            raise ConfigError(f"train.fsdp={t.fsdp}: no decoder layer class found in this model to wrap; "
                              "set train.fsdp=''")
        return {"fsdp": True, "fsdp_config": {"version": 2, "reshard_after_forward": t.fsdp == "full_shard",
                                              "transformer_layer_cls_to_wrap": [layer_class]}}
    if t.deepspeed:
        return {"deepspeed": str(deepspeed_config_path(t.deepspeed))}  # HF fills its "auto" values from args
    return {}


def rank_figures(tokens: int, target_tokens: int, train_s: float, peak_mb: float) -> dict:
    """Tokens/s and peak memory of every rank (gathered) and in total; a single process is one rank."""
    mine = {"rank": rank(), "tokens": tokens, "target_tokens": target_tokens,
            "tokens_per_s": round(tokens / max(train_s, 1e-9), 1), "peak_mb": round(peak_mb, 1)}
    ranks = gather_object(mine)
    return {"world_size": world_size(), "ranks": ranks,
            "total_tokens": sum(r["tokens"] for r in ranks),
            "total_tokens_per_s": round(sum(r["tokens_per_s"] for r in ranks), 1),
            "total_peak_mb": round(sum(r["peak_mb"] for r in ranks), 1)}
