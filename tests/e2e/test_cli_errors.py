"""Bad input to `tunelab train` ends with one line naming the problem, exit 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def tunelab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tunelab.cli.main", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def recipe(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tunelab: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in err[0], err[0]


@pytest.mark.parametrize("model", ["gemma3-270m"])
def test_typo_key_missing_file_broken_line_on_a_preset(tmp_path, model, sample_path):
    typo = recipe(tmp_path, f"model: {{name_or_path: {model}}}\ntrain: {{max_step: 3}}\n")
    assert_one_line_error(tunelab("train", str(typo)), "unknown key 'max_step'", "max_steps")

    missing = recipe(tmp_path, f"model: {{name_or_path: {model}}}\ndata: {{train_file: {tmp_path}/nope.jsonl}}\n")
    assert_one_line_error(tunelab("train", str(missing)), "nope.jsonl", "not found")

    lines = sample_path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:40]  # cut one line in half
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = recipe(tmp_path, f"model: {{name_or_path: {model}}}\ndata: {{train_file: {broken}}}\n"
                           f"train: {{output_dir: {tmp_path}/run}}\n")
    assert_one_line_error(tunelab("train", str(cfg)), f"{broken}:3:", "invalid JSON", "skip_invalid")
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_unknown_model_lists_presets(tmp_path, sample_path):
    cfg = recipe(tmp_path, f"model: {{name_or_path: no-such-model}}\ndata: {{train_file: {sample_path}}}\n")
    assert_one_line_error(tunelab("train", str(cfg)), "no-such-model", "smollm2-135m-instruct", "gemma3-270m")


def test_bad_override_and_wrong_type(tmp_path, sample_path):
    cfg = recipe(tmp_path, f"data: {{train_file: {sample_path}}}\n")
    assert_one_line_error(tunelab("train", str(cfg), "--train.max_steps=lots"), "train.max_steps", "expected int")


def test_models_lists_presets():
    proc = tunelab("models")
    assert proc.returncode == 0
    assert "smollm2-135m-instruct" in proc.stdout and "gemma3-270m" in proc.stdout
    assert "Apache-2.0" in proc.stdout
