"""Fine-tuning methods, one module each, registered by name."""

from tunelab.methods.registry import METHODS, apply_method, parameter_report, register_method
from tunelab.methods import lora  # noqa: F401  (registers lora)

__all__ = ["METHODS", "apply_method", "parameter_report", "register_method"]
