from tunelab.config.schema import (
    Config,
    DataConfig,
    EvalConfig,
    MethodConfig,
    ModelConfig,
    TrainConfig,
)
from tunelab.config.load import config_to_dict, load_config, parse_overrides, save_config

__all__ = [
    "Config",
    "DataConfig",
    "EvalConfig",
    "MethodConfig",
    "ModelConfig",
    "TrainConfig",
    "config_to_dict",
    "load_config",
    "parse_overrides",
    "save_config",
]
