import pytest
import yaml

from tunelab.config import Config, load_config, parse_overrides, save_config
from tunelab.utils.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_and_overrides_map_onto_dataclasses(tmp_path):
    p = write(tmp_path, "model: {name_or_path: x}\ntrain: {max_steps: 5, learning_rate: 1}\n")
    cfg = load_config(p, ["--train.max_steps=7", "--method.target_modules=q_proj,v_proj", "--data.skip_invalid=true"])
    assert cfg.model.name_or_path == "x"
    assert cfg.train.max_steps == 7
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.method.target_modules == ["q_proj", "v_proj"]
    assert cfg.data.skip_invalid is True


def test_unknown_key_names_valid_keys_and_suggests(tmp_path):
    p = write(tmp_path, "train: {max_step: 5}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "unknown key 'max_step'" in msg and "did you mean 'max_steps'" in msg
    assert "learning_rate" in msg and str(p) in msg


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'trian'.*valid keys: model, data, method, train, eval"):
        load_config(write(tmp_path, "trian: {}\n"))


@pytest.mark.parametrize("override,expected", [
    ("--train.max_steps=abc", "train.max_steps: expected int"),
    ("--data.skip_invalid=3", "expected true or false"),
    ("--train.learning_rate=true", "expected float"),
    ("--method.target_modules={a: 1}", "expected a list"),
])
def test_wrong_types(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(overrides=[override])


def test_exponent_without_dot_is_a_number(tmp_path):
    cfg = load_config(write(tmp_path, "train: {learning_rate: 3e-5}\n"), ["--train.max_steps=10", "--train.weight_decay=1e-2"])
    assert cfg.train.learning_rate == 3e-5 and cfg.train.weight_decay == 0.01


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="--section.key=value"):
        parse_overrides(["--max_steps=3"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [unclosed\n"))


def test_roundtrip_yaml(tmp_path):
    cfg = load_config(overrides=["--train.max_steps=3", "--train.extra={seed: 1}"])
    save_config(cfg, tmp_path / "out.yaml")
    again = load_config(tmp_path / "out.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["train"]["max_steps"] == 3


def test_every_field_has_help():
    import dataclasses
    import typing

    for name, section in typing.get_type_hints(Config).items():
        for f in dataclasses.fields(section):
            assert f.metadata.get("help"), f"{name}.{f.name} has no help text"


def test_typed_choices_match_the_registries():
    """A choice field's Literal lists exactly what its registry holds: a new module needs its name there."""
    import typing
    from pathlib import Path

    from tunelab.config.schema import DataConfig, EvalConfig, MethodConfig, TrainConfig
    from tunelab.data.readers import READERS
    from tunelab.data.template import TOOL_RESULT_FORMATS
    from tunelab.domains import DOMAINS
    from tunelab.evaluate.job import DECODERS
    from tunelab.methods.registry import METHODS
    from tunelab.train.precision import CHOICES

    def choices(cls, name):
        return set(typing.get_args(typing.get_type_hints(cls)[name]))

    templates = {p.stem for p in (Path(__file__).parents[2] / "src/tunelab/data/templates").glob("*.yaml")}
    assert choices(MethodConfig, "name") == set(METHODS)
    assert choices(DataConfig, "format") == set(READERS) | {"auto"}
    assert choices(DataConfig, "template") == templates | {"auto"}
    assert choices(DataConfig, "tool_results") == set(TOOL_RESULT_FORMATS)
    assert choices(DataConfig, "domain") == set(DOMAINS) | {""}
    assert choices(EvalConfig, "decode") == set(DECODERS)
    assert choices(TrainConfig, "mixed_precision") == set(CHOICES)


def test_a_bad_choice_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"method.name: 'lroa' is not a valid choice \(did you mean 'lora'\?\); valid: lora"):
        load_config(overrides=["--method.name=lroa"])


def test_a_bare_no_is_the_choice_no(tmp_path):
    assert load_config(write(tmp_path, "train: {mixed_precision: no}\n")).train.mixed_precision == "no"
    assert load_config(overrides=["--train.mixed_precision=no"]).train.mixed_precision == "no"
