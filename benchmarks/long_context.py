"""Long context on a real preset: dev loss past a base window with and without `model.rope_scaling`.

    PYTHONPATH=src python benchmarks/long_context.py --db data/hotel/hotels.db \
        [--model smollm2-135m-instruct] [--window 1024] [--factor 2] [--steps 8] [--train 32] [--dev 8]

A synthesized hotel dialog is 550-3,250 SmolLM2 tokens (Chinese costs it 1-2 tokens a character), so two
joined ones hold several searches and pass 2,048 tokens. SmolLM2-135M was pretrained to 8,192
positions, past what a CPU trains in minutes. So the "base window"
W is declared: the model's config gets `max_position_embeddings: W` (what dynamic and yarn scale from;
linear divides every position by the factor whatever W is), and the long hotel dialogs (several
synthesized dialogs joined, so several searches each) are cut at 2W tokens. For each of no scaling,
linear, dynamic and yarn (factor F) it reports the loss on target tokens inside W and past it, zero-shot
and after the same short LoRA run at length 2W (`evaluate/position_loss.py`). Because the positions
past W were in fact seen in pretraining, this measures what each scaling costs or recovers on a real
model, not an extension past a window the model never saw (the tiny-model test does that).
Results go to benchmarks/results/long_context.md with the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tunelab.config.schema import ModelConfig, RopeScaling
from tunelab.data.dataset import read_data
from tunelab.data.template import get_template
from tunelab.domains.hotel.synth import synthesize
from tunelab.evaluate.position_loss import engine_position_loss, position_loss
from tunelab.infer.engine import ChatEngine
from tunelab.models import load_model
from tunelab.models.presets import PRESETS
from tunelab.utils.io import write_text

SYSTEM = "你是酒店预订助手。需要查酒店时调用search_hotels工具，再根据查询结果回答客人。"
TYPES = ["none", "linear", "dynamic", "yarn"]


def windowed_base(model: str, window: int, root: Path) -> Path:
    """A model directory that is `model` with max_position_embeddings set to `window` (weights linked)."""
    from tunelab.models.gguf_cache import import_gguf

    path = PRESETS[model].locate() if model in PRESETS else Path(model)
    src = import_gguf(path) if path.suffix == ".gguf" else path
    out = root / "base"
    out.mkdir()
    for f in src.iterdir():
        if f.name != "config.json":
            (out / f.name).symlink_to(f.resolve())
    config = json.loads((src / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(config | {"max_position_embeddings": window}))
    return out


def long_dialogs(db: str, n: int, per: int, seed: int, path: Path) -> str:
    """n hotel dialogs, each `per` synthesized dialogs joined (a new request after each one's end)."""
    parts = synthesize(db, n * per, seed=seed)
    rows = [{"id": f"long-{seed}-{i}", "kind": "long",
             "dialog": [t for d in parts[i * per:(i + 1) * per] for t in d["dialog"]]} for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def zero_shot(base: Path, scaling: dict | None, dev: str, window: int) -> dict:
    rope = RopeScaling(**scaling) if scaling else RopeScaling()
    model, tok, _ = load_model(ModelConfig(name_or_path=str(base), dtype="float32", rope_scaling=rope), "cpu")
    engine = ChatEngine(model, tok, get_template("auto", tok, "table"), SYSTEM)
    from tunelab.config.schema import DataConfig

    convs, _ = read_data(dev, DataConfig())
    return engine_position_loss(engine, convs, window, 2 * window)


def lora_run(base: Path, scaling: dict | None, train_file: str, out: Path, args) -> Path:
    from tunelab.train.job import train

    model = {"name_or_path": str(base), "dtype": "float32"} | ({"rope_scaling": scaling} if scaling else {})
    train({"model": model,
           "data": {"train_file": train_file, "max_length": 2 * args.window, "cache": False, "system_prompt": SYSTEM},
           "method": {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.0},
           "train": {"output_dir": str(out), "max_steps": args.steps, "learning_rate": args.lr,
                     "per_device_train_batch_size": 1, "lr_scheduler_type": "constant", "warmup_steps": 0,
                     "logging_steps": 5, "mixed_precision": "no", "seed": 0}})
    return out


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="data/hotel/hotels.db", help="hotel database (`tunelab hotel build-db`)")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--window", type=int, default=1024, help="declared base window W; dialogs are cut at 2W")
    ap.add_argument("--factor", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=8, help="LoRA steps per scaling type (batch 1)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train", type=int, default=32, help="long training dialogs")
    ap.add_argument("--dev", type=int, default=8, help="long dev dialogs")
    ap.add_argument("--per", type=int, default=2, help="synthesized dialogs joined into one long dialog")
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "long_context.md"))
    args = ap.parse_args()
    if not Path(args.db).is_file():
        sys.exit(f"long_context: {args.db}: no hotel database; build one with `tunelab hotel build-db`")
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="long_context.") as tmp:
        root = Path(tmp)
        base = windowed_base(args.model, args.window, root)
        train_file = long_dialogs(args.db, args.train, args.per, 101, root / "train.jsonl")
        dev = long_dialogs(args.db, args.dev, args.per, 202, root / "dev.jsonl")
        for kind in args.types.split(","):
            scaling = None if kind == "none" else {"type": kind, "factor": args.factor}
            zs = zero_shot(base, scaling, dev, args.window)
            run = lora_run(base, scaling, train_file, root / f"run-{kind}", args)
            tuned = position_loss(run, dev, args.window)
            rows.append((kind, zs, tuned))
            print(kind, json.dumps({"zero_shot": zs, "lora": tuned}), flush=True)
    minutes = (time.perf_counter() - start) / 60
    zs0 = rows[0][1]
    cmd = "PYTHONPATH=src python benchmarks/long_context.py " + " ".join(sys.argv[1:])
    table = (
        f"# Long context: {args.model}, declared window W={args.window}, hotel dialogs cut at {2 * args.window} "
        f"tokens, factor {args.factor:g}\n\n"
        f"Command: `{cmd.strip()}` ({minutes:.1f} min)\n\n"
        f"Dev: {args.dev} long dialogs ({args.per} synthesized hotel dialogs joined, several searches each), "
        f"{zs0['tokens_within']} target tokens inside W and {zs0['tokens_past']} past it. LoRA r16, "
        f"{args.steps} steps, batch 1, lr {args.lr:g}, on {args.train} long dialogs at length {2 * args.window}, "
        "the same for each row.\n\n"
        "| rope_scaling | zero-shot: inside W | zero-shot: past W | LoRA: inside W | LoRA: past W |\n"
        "|---|---|---|---|---|\n"
        + "".join(f"| {k if k == 'none' else f'{k} {args.factor:g}'} | {fmt(z['within'])} | {fmt(z['past'])} | "
                  f"{fmt(t['within'])} | {fmt(t['past'])} |\n" for k, z, t in rows)
        + "\nThe model was pretrained to its real window (SmolLM2: 8,192), so W is declared, not learned: "
          "positions past W are not new to it.\n"
    )
    print(table)
    write_text(Path(args.out), table)


if __name__ == "__main__":
    main()
