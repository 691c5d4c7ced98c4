"""Time LLaMA-Factory 0.9.5 LoRA fine-tuning on tunelab's hotel dialogs (CPU, fp32).

    .venv/bin/python benchmarks/train_throughput/llamafactory.py DATA_FILE --model-dir DIR \
        --work benchmarks/out/lf [--n N] [--system-prompt TEXT]

LLaMA-Factory is never a tunelab dependency: `run_llamafactory` installs it into its own venv at
`work/lf-venv` (reused on later calls while its stamp file matches) and runs `llamafactory-cli train`
there as a subprocess. Installation is not timed.

Install (pip output in `work/lf-install.log`; about 1.5-3.5 min here): `pip install torch==2.13.0`
first (the build the machine's pip configuration resolves: here the local 2.13.0+cpu wheel), then
`pip install llamafactory==0.9.5` with a constraints file holding torch==2.13.0 (PINS). LF's own caps
then resolve to transformers 5.6.0, peft 0.18.1, accelerate 1.11.0, datasets 4.0.0, trl 0.24.0,
torchdata 0.11.0; its hard requirements torchvision and torchaudio resolve to 0.28.0 (pins
torch==2.13.0) and 2.11.0 (pins nothing). Both come from PyPI as CUDA builds whose native libraries
need libc10_cuda.so, which a CPU torch lacks (PyTorch's CPU wheel index is not reachable here), and
both then break imports: torchvision breaks `from transformers import PreTrainedModel`, torchaudio
breaks LF's data module, which imports it at module level. So, only where the import fails,
`_fix_cuda_only_wheels` uninstalls torchvision (LF never imports it; transformers skips it when
absent) and deletes torchaudio's native libraries (torchaudio then imports as pure Python; LF only
calls it for audio inputs). The fixups are recorded in the stamp file and in the result
(`venv_fixups`). With a CPU torchvision/torchaudio available (e.g. a CPU wheel index) nothing is
changed. The stamp `lf-venv/.tunelab-lf-stamp.json` makes later calls reuse the venv.

Data: the file is read with tunelab's own reader and converted to LF's sharegpt format with
function calling: human / gpt / function_call (`{"name", "arguments"}` JSON) / observation (the
records as JSON), `system` = the conversation's own system turn or else `system_prompt` (as tunelab's
renderer does), `tools` = JSON list with the bare `search_hotels` function schema (LF accepts bare or
`{"type": "function", "function": ...}` entries). LF's role-order rules are checked here; a dialog
that breaks them raises instead of being silently skipped by LF.

Config: stage sft, LoRA, batch 1, grad accumulation 1, lr 1e-4, fp32 (no bf16/fp16; on a CPU LF's
dtype inference also lands on fp32), save_strategy no, report_to none, plus `tokenized_path` (LF saves
its tokenized set there, well under a second outside train_s, and trains on as usual, so the tokens
can be counted). Everything else is LF's default,
in particular gradient checkpointing (on unless `disable_gradient_checkpointing`); the result says
whether LF's log reported it enabled. Template: `smollm2` (LF's template for SmolLM2: ChatML turns,
stop word <|im_end|>; it has no tool role, so LF renders tools with its "default" tool format and
observations as user turns).

Measurements:
- train_s: HF Trainer `train_runtime` from LF's all_results.json; wall_s: the whole subprocess
  (imports, tokenizing, model load, training, adapter save).
- tokens / target_tokens: from LF's own tokenized training set, saved by LF via `tokenized_path` and
  counted after the run (tokens = sum of len(input_ids), no padding; target = labels != -100), times
  epochs. LF's collator pads each batch to a multiple of 8; those pad positions are not counted.
  `at_cutoff`: dialogs whose tokenized length reached cutoff_len, i.e. that LF truncated.
- peak_rss_mb: peak of the summed RSS of the LF process tree, polled every 0.1 s with psutil when the
  running Python has it; otherwise getrusage(RUSAGE_CHILDREN).ru_maxrss (the largest single child,
  only meaningful if it rose during this run). `rss_method` says which.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

LF_VERSION = "0.9.5"
TORCH_VERSION = "2.13.0"
SYSTEM = f"LLaMA-Factory {LF_VERSION}"
TEMPLATE = "smollm2"
DATASET_NAME = "tunelab_hotel"
# constraints for the LF install; torch stays at the build installed first
PINS = (f"torch=={TORCH_VERSION}",)
STAMP = ".tunelab-lf-stamp.json"

# sharegpt tags
HUMAN, GPT, FUNCTION_CALL, OBSERVATION = "human", "gpt", "function_call", "observation"
ODD, EVEN = (HUMAN, OBSERVATION), (GPT, FUNCTION_CALL)  # LF: 1st, 3rd, ... / 2nd, 4th, ... message


# ---------------------------------------------------------------------------- data


def to_sharegpt(conv, system_prompt: str, tools_json: str) -> dict:
    """One tunelab Conversation -> one LF sharegpt row; raises ValueError where LF's rules break."""
    turns = list(conv.turns)
    system = system_prompt
    if turns and turns[0].role == "system":
        system = turns.pop(0).content
    messages = []
    for t in turns:
        if t.role == "user":
            messages.append({"from": HUMAN, "value": t.content})
        elif t.role == "assistant":
            messages.append({"from": GPT, "value": t.content})
        elif t.role == "tool_call":
            messages.append({"from": FUNCTION_CALL,
                             "value": json.dumps({"name": t.name, "arguments": t.arguments}, ensure_ascii=False)})
        elif t.role == "tool_result":
            messages.append({"from": OBSERVATION, "value": json.dumps(t.records, ensure_ascii=False)})
        else:  # a system turn after the first
            raise ValueError(f"{conv.source}: a {t.role!r} turn inside the dialog has no sharegpt equivalent")
    where = conv.source or "dialog"
    for i, m in enumerate(messages):
        allowed = ODD if i % 2 == 0 else EVEN
        if m["from"] not in allowed:
            raise ValueError(
                f"{where}: message {i + 1} is {m['from']!r} but LLaMA-Factory's sharegpt format needs one of "
                f"{'/'.join(allowed)} there (human/observation and gpt/function_call must alternate); "
                f"LF would drop this dialog")
    if not messages or len(messages) % 2:
        raise ValueError(f"{where}: {len(messages)} messages; LLaMA-Factory needs an even, non-zero count "
                         "(the dialog must end with a gpt or function_call message)")
    return {"conversations": messages, "system": system, "tools": tools_json}


def write_dataset(data_file: Path, data_dir: Path, system_prompt: str) -> int:
    """Convert `data_file` into `data_dir`/{hotel.json,dataset_info.json}; returns the dialog count."""
    from tunelab.data.readers import read_conversations
    from tunelab.domains.hotel.tool import TOOL_SPEC

    convs, skipped = read_conversations(data_file)
    if skipped:
        raise ValueError(f"{data_file}: {skipped} rows skipped by tunelab's reader")
    tools_json = json.dumps([TOOL_SPEC["function"]], ensure_ascii=False)
    rows = [to_sharegpt(c, system_prompt, tools_json) for c in convs]
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "hotel.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    info = {DATASET_NAME: {
        "file_name": "hotel.json",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "tools": "tools"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": HUMAN, "assistant_tag": GPT,
                 "observation_tag": OBSERVATION, "function_tag": FUNCTION_CALL},
    }}
    (data_dir / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return len(rows)


# ---------------------------------------------------------------------------- venv


def ensure_venv(venv: Path, log=print) -> float:
    """Create or reuse LF's venv; returns the seconds spent installing (0.0 when reused)."""
    want = {"llamafactory": LF_VERSION, "torch": TORCH_VERSION, "pins": list(PINS), "fixups": 1}
    stamp = venv / STAMP
    cli = venv / "bin" / "llamafactory-cli"
    if stamp.is_file() and cli.is_file():
        try:
            if json.loads(stamp.read_text())["want"] == want:
                return 0.0
        except (ValueError, KeyError):
            pass
    t0 = time.perf_counter()
    if venv.exists():
        shutil.rmtree(venv)
    install_log = venv.parent / "lf-install.log"
    log(f"creating {venv} and installing LLaMA-Factory {LF_VERSION} (not timed; pip log: {install_log})")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    with open(install_log, "w") as out:
        def pip(*args: str) -> None:
            out.flush()
            proc = subprocess.run([py, "-m", "pip", *args], stdout=out, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                raise RuntimeError(f"pip {' '.join(args)} failed; last lines of {install_log}:\n"
                                   + _tail(install_log))

        # torch first: a bare `pip install llamafactory` would pull a CUDA torch build
        pip("install", f"torch=={TORCH_VERSION}")
        constraints = venv / "lf-constraints.txt"
        constraints.write_text("\n".join(PINS) + "\n")
        pip("install", "-c", str(constraints), f"llamafactory=={LF_VERSION}")
        fixups = _fix_cuda_only_wheels(py, pip, log)
    freeze = subprocess.run([py, "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    (venv / "pip-freeze.txt").write_text(freeze)
    seconds = time.perf_counter() - t0
    stamp.write_text(json.dumps({"want": want, "install_s": round(seconds, 1), "fixups": fixups}, indent=2))
    log(f"installed in {seconds:.0f}s" + (f"; fixups: {'; '.join(fixups)}" if fixups else ""))
    return seconds


def _imports(py: str, module: str) -> bool:
    return subprocess.run([py, "-c", f"import {module}"], capture_output=True).returncode == 0


def _fix_cuda_only_wheels(py: str, pip, log) -> list[str]:
    """Make torchvision/torchaudio coexist with a CPU torch; returns what was changed.

    Their PyPI Linux wheels are CUDA builds whose native libraries need libc10_cuda.so, which a
    CPU torch lacks. torchvision: LF never imports it, but transformers imports it whenever it is
    installed (and then fails), so it is uninstalled. torchaudio: LF imports it at module level
    (it only calls it for audio inputs), and torchaudio imports as pure Python when its native
    libraries are absent, so those are removed."""
    fixups = []
    if not _imports(py, "torchvision"):
        pip("uninstall", "-y", "torchvision")
        fixups.append("uninstalled torchvision (CUDA-only wheel; unused by LF text SFT)")
    if not _imports(py, "torchaudio"):
        where = subprocess.run(
            [py, "-c", "import importlib.util as u; print(u.find_spec('torchaudio').submodule_search_locations[0])"],
            capture_output=True, text=True, check=True).stdout.strip()
        libs = sorted((Path(where) / "lib").glob("*.so"))
        for lib in libs:
            lib.unlink()
        fixups.append(f"removed torchaudio's CUDA-linked native libs ({', '.join(p.name for p in libs)})")
        if not _imports(py, "torchaudio"):
            raise RuntimeError("torchaudio still fails to import in the LF venv")
    for fix in fixups:
        log(f"LF venv: {fix}")
    return fixups


# ---------------------------------------------------------------------------- run


def _yaml_value(v) -> str:
    return json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def _watch(proc: subprocess.Popen) -> float:
    """Wait for `proc`, polling the summed RSS of its process tree; returns the peak in MB."""
    import psutil

    peak = 0
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        peak = max(peak, total)
        time.sleep(0.1)
    proc.wait()
    return peak / 2**20


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def run_llamafactory(data_file: Path, model_dir: Path, work: Path, *, system_prompt: str,
                     lora_rank: int = 8, lora_target: str = "q_proj,v_proj", epochs: int = 1,
                     cutoff_len: int = 2048, seed: int = 0, log=print, python: str | None = None,
                     python_path: str | None = None, bf16: bool = False, cpu: bool | None = None) -> dict:
    """Train with LF and return its figures. By default LF runs on the CPU in fp32 from its own venv;
    `python` (+ `python_path`) names an interpreter that already has LF importable instead (the GPU
    machine, where nothing can be installed), and `bf16` is LF's `bf16: true` (it loads the model in bf16,
    its compute dtype, and the HF Trainer runs with bf16). `cpu` hides any GPU; default: hidden unless bf16."""
    data_file, model_dir, work = Path(data_file).resolve(), Path(model_dir).resolve(), Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data_dir, out_dir = work / "data", work / "lf-out"
    tokenized, ds_cache = work / "lf-tokenized", work / "lf-datasets-cache"
    n = write_dataset(data_file, data_dir, system_prompt)
    venv = work / "lf-venv"
    install_s = 0.0 if python else ensure_venv(venv, log=log)
    py = python or str(venv / "bin" / "python")

    for d in (out_dir, tokenized, ds_cache):  # fresh: LF would load a tokenized_path that exists
        shutil.rmtree(d, ignore_errors=True)
    config = {
        "model_name_or_path": str(model_dir),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": lora_rank,
        "lora_target": lora_target,
        "dataset_dir": str(data_dir),
        "dataset": DATASET_NAME,
        "template": TEMPLATE,
        "cutoff_len": cutoff_len,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "tokenized_path": str(tokenized),  # LF saves its tokenized set there and trains on
        "output_dir": str(out_dir),
        "overwrite_output_dir": True,
        "save_strategy": "no",
        "logging_steps": 1,
        "report_to": "none",
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "num_train_epochs": float(epochs),
        "learning_rate": 1e-4,
        "seed": seed,
        "bf16": bf16,
        "fp16": False,
    }
    cpu = cpu if cpu is not None else not bf16
    if cpu:
        config["use_cpu"] = True  # else the HF Trainer refuses bf16 without a GPU
    cfg_path = work / "config.yaml"
    cfg_path.write_text("".join(f"{k}: {_yaml_value(v)}\n" for k, v in config.items()))

    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "HF_DATASETS_CACHE": str(ds_cache), "PATH": f"{Path(py).parent}{os.pathsep}{env.get('PATH', '')}"})
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU comparison
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)  # keep the harness's packages out of LF's interpreter
    if python_path:
        env["PYTHONPATH"] = python_path
    log_path = work / "lf.log"
    cmd = [py, "-c", "import sys; from llamafactory.cli import main; sys.exit(main())", "train", str(cfg_path)]
    log(f"running {' '.join(cmd)} (log: {log_path})")
    try:
        import psutil  # noqa: F401

        rss_method = "psutil: peak summed RSS of the LF process tree, polled every 0.1 s"
    except ImportError:
        rss_method = "getrusage(RUSAGE_CHILDREN).ru_maxrss: the largest single child process so far"
    ru_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(log_path, "w") as lf_log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=lf_log, stderr=subprocess.STDOUT)
        if rss_method.startswith("psutil"):
            peak_mb = _watch(proc)
        else:
            proc.wait()
        wall_s = time.perf_counter() - t0
    if not rss_method.startswith("psutil"):
        ru_after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        peak_mb = ru_after / 1024 if ru_after > ru_before else float("nan")
    results_path = out_dir / "all_results.json"
    if proc.returncode != 0 or not results_path.is_file():
        raise RuntimeError(f"LLaMA-Factory failed (exit {proc.returncode}); last lines of {log_path}:\n"
                           + _tail(log_path))
    results = json.loads(results_path.read_text())
    train_s = float(results["train_runtime"])
    tokens, target_tokens, lengths = _count_tokens(py, tokenized, env)
    log_text = log_path.read_text(errors="replace")
    return {
        "system": SYSTEM,
        "dialogs": n,
        "epochs": epochs,
        "train_s": round(train_s, 3),
        "wall_s": round(wall_s, 3),
        "dialogs_per_s": round(n * epochs / train_s, 4),
        "tokens": tokens * epochs,
        "target_tokens": target_tokens * epochs,
        "tokens_per_s": round(tokens * epochs / train_s, 2),
        "tokens_method": "sum of len(input_ids) / labels != -100 over LF's own tokenized train set "
                         "(saved via tokenized_path), times epochs; batch pad positions not counted",
        "at_cutoff": sum(1 for n_tok in lengths if n_tok >= cutoff_len),  # dialogs LF truncated
        "peak_rss_mb": round(peak_mb, 1),
        "rss_method": rss_method,
        "train_loss": results.get("train_loss"),
        "template": TEMPLATE,
        "gradient_checkpointing": "Gradient checkpointing enabled." in log_text,
        "install_s": round(install_s, 1),
        "venv_fixups": [] if python else json.loads((venv / STAMP).read_text()).get("fixups", []),
        "bf16": bf16,
        "config": str(cfg_path),
        "log": str(log_path),
    }


def _count_tokens(py: str, tokenized: Path, env: dict) -> tuple[int, int, list[int]]:
    """(input tokens, supervised tokens, per-row lengths) of the train split LF saved at
    `tokenized`, read with LF's own venv (its `datasets` wrote it)."""
    code = ("import json, sys\nfrom datasets import load_from_disk\n"
            "ds = load_from_disk(sys.argv[1])\nds = ds['train'] if 'train' in ds else ds\n"
            "print(json.dumps([[len(x) for x in ds['input_ids']],"
            " sum(sum(1 for v in x if v != -100) for x in ds['labels'])]))\n")
    out = subprocess.run([py, "-c", code, str(tokenized)], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"counting LF's tokenized dataset failed:\n{out.stderr[-2000:]}")
    lengths, target = json.loads(out.stdout.strip().splitlines()[-1])
    return sum(lengths), int(target), lengths


# ---------------------------------------------------------------------------- CLI


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Time LLaMA-Factory LoRA SFT on tunelab hotel dialogs.")
    ap.add_argument("data_file", type=Path)
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("benchmarks/out/lf"))
    ap.add_argument("--n", type=int, default=0, help="use only the first N rows of DATA_FILE")
    ap.add_argument("--system-prompt", default="你是酒店预订助手。需要查酒店时调用search_hotels工具，再根据查询结果回答客人。")
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--lora-target", default="q_proj,v_proj")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--cutoff-len", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data_file = args.data_file
    if args.n:
        args.work.mkdir(parents=True, exist_ok=True)
        lines = [ln for ln in data_file.read_text(encoding="utf-8").split("\n") if ln.strip()][: args.n]
        data_file = args.work / f"first{args.n}.jsonl"
        data_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_llamafactory(data_file, args.model_dir, args.work, system_prompt=args.system_prompt,
                              lora_rank=args.lora_rank, lora_target=args.lora_target, epochs=args.epochs,
                              cutoff_len=args.cutoff_len, seed=args.seed,
                              log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
