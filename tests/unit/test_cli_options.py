"""Command options come from the config dataclasses: same defaults, same ranges, same choices, one source."""

import dataclasses

import pytest

from tunelab.cli.main import build_parser
from tunelab.config.schema import EvalConfig, ServeConfig

CASES = [(["evaluate", "RUN", "--data", "d.jsonl"], EvalConfig, ["limit", "batch_size", "decode", "max_new_tokens"]),
         (["chat", "RUN"], EvalConfig, ["max_new_tokens", "temperature", "top_p"]),
         (["serve", "RUN"], ServeConfig, ["host", "port", "api_key", "execute_tools", "max_tokens_cap", "queue_size",
                                          "batch_max", "timeout_s", "max_body_bytes", "max_prompt_tokens", "stuck_margin_s"]),
         (["webui", "RUN"], ServeConfig, ["host", "webui_port"])]


@pytest.mark.parametrize("argv, cls, names", CASES, ids=[c[0][0] for c in CASES])
def test_defaults_are_the_dataclass_defaults(argv, cls, names):
    args = build_parser().parse_args(argv)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    assert {n: getattr(args, n) for n in names} == {n: defaults[n] for n in names}


def test_choices_and_ranges_come_along(capsys):
    from tunelab.cli.main import main

    assert main(["evaluate", "RUN", "--data", "d", "--decode", "beam"]) == 2
    assert "invalid choice: 'beam' (choose from 'dialog', 'batch')" in capsys.readouterr().err
    assert main(["chat", "RUN", "--top-p", "1.5"]) == 2
    assert "--top-p: 1.5 is out of range; valid: > 0 and <= 1" in capsys.readouterr().err


def test_an_override_may_take_its_value_after_a_space():
    from tunelab.cli.main import config_overrides

    assert config_overrides(["--train.output_dir", "/tmp/x", "--data.cache=false", "--bogus", "y"]) == (
        ["--train.output_dir=/tmp/x", "--data.cache=false"], ["--bogus", "y"])


def test_config_show_lists_every_key_and_marks_the_changed(capsys):
    from tunelab.cli.main import main
    from tunelab.config import Config

    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
    assert main(["config", "show", str(recipe), "--train.max_steps", "7", "--serve.port=9000"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    keys = {line.split()[0] for line in lines}
    expected = {f"{s.name}.{f.name}" for s in dataclasses.fields(Config) for f in dataclasses.fields(getattr(Config(), s.name))}
    assert keys == expected
    changed = {line.split()[0] for line in lines if " * " in line or line.rstrip().endswith("*")}
    assert {"train.max_steps", "serve.port", "model.name_or_path", "train.output_dir"} <= changed
    assert "train.seed" not in changed and "eval.decode" not in changed
