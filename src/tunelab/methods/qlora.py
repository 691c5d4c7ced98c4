"""QLoRA: LoRA on a 4-bit NF4 base with double quantization; paged AdamW on CUDA.

On CPU bitsandbytes runs NF4 about 20x slower than fp32: it works for tiny models and tests; real
QLoRA runs belong on a GPU.
"""

from __future__ import annotations

from tunelab.config.schema import MethodConfig
from tunelab.methods.lora import lora_config
from tunelab.methods.registry import TrainContext, register_method
from tunelab.utils.errors import ConfigError


def nf4_load_kwargs(cfg: MethodConfig, device: str) -> dict:
    import torch

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError("method qlora needs bitsandbytes (pip install bitsandbytes==0.50.2)") from None
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if device == "cuda" else torch.float32
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=compute)
    return {"quantization_config": quant}


def paged_optimizer(device: str) -> dict:
    return {"optim": "paged_adamw_32bit"} if device == "cuda" else {}


@register_method("qlora", "LoRA on a 4-bit NF4 (double-quantized) frozen base", load_kwargs=nf4_load_kwargs,
                 train_overrides=paged_optimizer, lora_options=True)
def apply_qlora(model, cfg: MethodConfig, ctx: TrainContext):
    from peft import get_peft_model, prepare_model_for_kbit_training

    if not getattr(model, "is_loaded_in_4bit", False):
        raise ConfigError("method qlora: the base model did not load in 4 bits")
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, lora_config(model, cfg))
