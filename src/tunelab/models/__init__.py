from tunelab.models.presets import PRESETS, Preset, preset_status
from tunelab.models.load import load_model, load_tokenizer, resolve_model_dir

__all__ = ["PRESETS", "Preset", "preset_status", "load_model", "load_tokenizer", "resolve_model_dir"]
