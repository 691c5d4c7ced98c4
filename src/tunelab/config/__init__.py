from tunelab.config.load import config_to_dict, load_config, parse_overrides, save_config
from tunelab.config.schema import (
    Config,
    DataConfig,
    EvalConfig,
    MethodConfig,
    ModelConfig,
    ServeConfig,
    TrainConfig,
)

__all__ = [
    "Config",
    "DataConfig",
    "EvalConfig",
    "MethodConfig",
    "ModelConfig",
    "ServeConfig",
    "TrainConfig",
    "config_to_dict",
    "load_config",
    "parse_overrides",
    "save_config",
]
