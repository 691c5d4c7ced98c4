"""Fine-tuning methods, one module each, registered by name."""

from tunelab.methods.registry import (
    METHODS,
    Method,
    TrainContext,
    apply_method,
    check_options,
    get_method,
    parameter_report,
    register_method,
)
from tunelab.methods import (  # noqa: F401  (each module registers its method)
    adalora, dora, freeze, full, ia3, lora, p_tuning, prefix_tuning, prompt_tuning, qlora,
)

__all__ = ["METHODS", "Method", "TrainContext", "apply_method", "check_options", "get_method", "parameter_report",
           "register_method"]
