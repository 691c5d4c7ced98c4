"""The typed configuration: one dataclass per section, each field with its help text.

YAML files and `--section.key=value` overrides map onto these one to one (see `load.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


def opt(default, help: str, ge=None, gt=None, le=None, lt=None, **kw):
    """A dataclass field carrying its help text and its valid range, checked when a config is loaded
    (mutable defaults go through default_factory)."""
    meta = {"help": help, "range": {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt).items() if v is not None}}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class RopeScaling:
    """RoPE context extension, applied through the model config (models/rope.py); recorded in run.json."""

    type: Literal["none", "linear", "dynamic", "yarn"] = opt(
        "none", "none, linear (positions divided by factor), dynamic (NTK base scaled past the window) or yarn")
    factor: float = opt(1.0, "context multiple over the model's max_position_embeddings (> 1 with a type)", ge=1)


@dataclass
class ModelConfig:
    name_or_path: str = opt(
        "smollm2-135m-instruct",
        "a preset name (`tunelab models`), a Hugging Face model directory, or a .gguf file",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt("auto", "auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16 or float16")
    trust_remote_code: bool = opt(False, "allow model code shipped in the model directory")
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = opt(
        "auto", "auto (the model's default), eager, sdpa or flash_attention_2 (CUDA, flash-attn installed)")
    rope_scaling: RopeScaling = field(default_factory=RopeScaling, metadata={
        "help": "{type: linear|dynamic|yarn, factor: F}: train and run past the model's context window", "range": {}})
    adapter: str = opt("", "a tunelab run (or PEFT adapter directory) on name_or_path to start from, e.g. the SFT run "
                       "a preference task refines: its adapter trains on, a frozen copy is the reference")


@dataclass
class DataConfig:
    task: Literal["sft", "classify", "dpo", "orpo", "simpo", "kto"] = opt(
        "sft", "sft (chat fine-tuning), classify (`text`/`label` rows from CSV, JSONL or JSON; an encoder gets a "
        "classification head, a causal LM learns the label as its answer), or a preference task on TRL: dpo, orpo, "
        "simpo (`prompt`/`messages` + `chosen`/`rejected` rows) or kto (`messages` + `completion` + boolean `label`)")
    labels: list[str] = opt([], "classify: the label set in a fixed order; empty: the sorted labels of train_file")
    train_file: str | list[str] = opt("", "training data: JSONL/JSON file (or a `datasets` directory), or a list of "
                                      "them whose rows are concatenated (sft), e.g. synthetic + real dialogs")
    train_files: list[dict] = opt([], "a weighted mix instead of train_file: [{path: FILE, weight: W}, ...]; each "
                                  "file's rows taken W times (2: twice, 0.5: a seeded half), then concatenated (sft)")
    dev_file: str | list[str] = opt("", "optional development data, same formats (a list: rows concatenated; task "
                                    "metrics on the first file, whose database is data.db); dev loss at eval steps")
    format: Literal["auto", "hotel", "turns", "messages", "alpaca", "prompt_completion"] = opt(
        "auto", "auto, hotel, turns, messages, alpaca or prompt_completion (auto: sniffed per file)"
    )
    template: Literal["auto", "chatml", "gemma", "plain"] = opt(
        "auto", "chat template: auto (the family of the model's own template), chatml, gemma or plain"
    )
    system_prompt: str = opt("", "system prompt put before every conversation that has none")
    max_length: int = opt(1024, "tokens per sequence; old turns are dropped from the left to fit", ge=1)
    tool_results: Literal["table", "json"] = opt("table", "how tool results are rendered: table (records sharing keys as a header "
                            "line and one line per record: fewest tokens, same facts) or json (json.dumps)")
    record_view: Literal["full", "relevant"] = opt(
        "full", "how tool records read: full, or relevant: the domain keeps what the dialog asks about (hotel: of "
        "each record's facilities, those the search or a guest's message names; 30% fewer training tokens)")
    packing: bool = opt(False, "pack each batch's conversations into one row (position ids restart per "
                        "conversation, attention kept apart): no padding at all")
    pad_to_multiple_of: int = opt(
        0, "pad each batch's length up to a multiple of this (0: auto: 64 under bf16, whose CPU/GPU kernels are "
        "built and cached per shape, 1 otherwise); pads are never attended to or supervised", ge=0)
    dev_max_samples: int = opt(64, "dev-loss conversations at most (0: all); dev loss is forward-only but not free",
                               ge=0)
    cache: bool = opt(True, "reuse tokenized data keyed by (file bytes, tokenizer, template, max_length); "
                      "`tunelab train --no-cache` forces tokenization")
    skip_invalid: bool = opt(False, "skip and count bad rows instead of stopping at the first")
    max_samples: int = opt(0, "use at most this many conversations (0: all)", ge=0)
    openings: float = opt(
        0.0, "sft: also train on conversation openings, this many per conversation (1: each once, 0.5: a seeded "
        "half, 0: off): a conversation up to its first answer or tool call made before any tool result, the "
        "first request and the decision on it (a reply, or a tool call and its arguments), at about a quarter of "
        "what its whole conversation costs to train on", ge=0)
    openings_per_step: int = opt(8, "sft: openings batched into one step (an extra step among the conversations)",
                                 ge=1)
    domain: Literal["", "hotel", "units"] = opt("", "domain plug-in whose tools chat, serve and evaluate run: '' (none), hotel "
                                                           "or units (tunelab/domains)")
    db: str = opt("", "the domain's database (hotel: a SQLite file from `tunelab hotel build-db`)")


@dataclass
class MethodConfig:
    name: Literal["lora", "dora", "qlora", "adalora", "ia3", "prompt_tuning", "p_tuning", "prefix_tuning", "full",
                  "freeze"] = opt("lora", "fine-tuning method (one module each under tunelab/methods)")
    r: int = opt(8, "LoRA rank", ge=1)
    alpha: int = opt(16, "LoRA alpha (scaling = alpha / r)", ge=1)
    dropout: float = opt(0.05, "LoRA dropout", ge=0, lt=1)
    target_modules: list[str] = opt([], "module names to adapt; empty: the model family's default")
    lora_layers: int = opt(0, "lora, dora, qlora: adapt only the last N decoder layers (0: all); backward "
                              "then stops at the lowest adapted layer, so a step costs less", ge=0)
    loraplus_lr_ratio: float = opt(
        0.0, "lora, dora, qlora: LoRA+, the B factors and 1-D trainable parameters (DoRA's magnitudes, biases) "
        "learn at this many times train.learning_rate, the A factors and the rest at it (peft's grouping; 0: off)",
        ge=0)
    target_r: int = opt(4, "adalora: average rank left after the budget is reallocated (init rank is r)", ge=1)
    num_virtual_tokens: int = opt(16, "prompt_tuning, p_tuning, prefix_tuning: virtual tokens", ge=1)
    prompt_encoder: Literal["MLP", "LSTM"] = opt("MLP", "p_tuning: MLP or LSTM prompt encoder")
    encoder_hidden_size: int = opt(128, "p_tuning: prompt encoder hidden size", ge=1)
    trainable_layers: int = opt(2, "freeze: train the last N decoder layers", ge=0)
    trainable_modules: list[str] = opt([], "freeze: also train parameters whose names contain these")


@dataclass
class TrainConfig:
    """Field names are Hugging Face `TrainingArguments` names, passed through to it."""

    output_dir: str = opt("runs/default", "run directory: config, checkpoints, adapter, metrics, plots")
    max_steps: int = opt(-1, "optimizer steps; -1: run num_train_epochs", ge=-1)
    num_train_epochs: float = opt(1.0, "epochs when max_steps is -1", gt=0)
    learning_rate: float = opt(2e-4, "peak learning rate", ge=0)
    lr_scheduler_type: str = opt("cosine", "linear, cosine, constant, constant_with_warmup, ...")
    warmup_steps: int = opt(0, "linear warm-up steps", ge=0)
    weight_decay: float = opt(0.0, "AdamW weight decay", ge=0)
    max_grad_norm: float = opt(1.0, "gradient clipping (0: none)", ge=0)
    per_device_train_batch_size: int = opt(1, "sequences per step per device", ge=1)
    per_device_eval_batch_size: int = opt(1, "sequences per dev-loss batch", ge=1)
    gradient_accumulation_steps: int = opt(1, "micro-batches per optimizer step", ge=1)
    gradient_checkpointing: bool = opt(False, "recompute every layer's activations to save memory (slower)")
    activation_memory_mb: int = opt(
        0, "cap on the activations a batch keeps for the backward pass (0: no cap, fastest): a batch over it "
        "checkpoints just enough decoder layers to fit, shorter ones none (train/memory.py)", ge=0)
    target_only_logits: bool = opt(True, "run the LM head only where a label is supervised (same loss, faster)")
    decision_weight: float = opt(
        1.0, "loss weight of the first supervised token of each turn, where a chat model decides between a reply "
        "and a tool call (1: every token alike); causal SFT rows only", gt=0)
    context_grad: bool = opt(
        True, "false: the context (every position that predicts no label: prompts, tool results) runs forward "
        "without gradient, and only the positions that predict a label run forward and backward, attending to the "
        "context's keys and values; the same loss, fewer FLOPs a step, a gradient without the paths through the "
        "context (causal SFT rows, unpacked; train/loss.py)")
    mixed_precision: Literal["auto", "bf16", "no"] = opt(
        "auto", "bf16 autocast (fp32 weights and optimizer, bf16 matmuls and attention) or no; auto: bf16 on "
        "CUDA, and on a CPU where a training step of this model measured at least 1.15x faster in bf16 (timed "
        "once per machine and model, cached; recorded in run.json as bf16_measured)")
    cpu_attention: Literal["auto", "sdpa"] = opt(
        "auto", "causal attention of a bf16 run on a CPU: auto: tunelab's kernel (models/cpu_attention.cpp, built "
        "on first use with the system's C++ compiler) where it timed at least 1.1x faster than torch's SDPA at "
        "the model's shapes on this machine (once, cached; run.json: cpu_attention), else SDPA; sdpa: always SDPA")
    lean_layers: bool = opt(
        True, "a bf16 adapter run on a CPU: RMSNorm and the gated MLP keep less for the backward pass (recomputing "
        "the rest), a norm feeding only linears hands them bf16 once, and LoRA takes its input in bf16 "
        "(models/fused.py; the same values, 22% less activation memory on SmolLM2-135M)")
    compile: bool = opt(False, "torch.compile each decoder layer (pays on long runs; compiling takes minutes)")
    threads: int = opt(0, "CPU threads for torch (0: torch's default, one per core)", ge=0)
    logging_steps: int = opt(1, "log loss every N steps", ge=1)
    save_steps: int = opt(0, "checkpoint every N steps (0: only the final adapter)", ge=0)
    save_total_limit: int = opt(2, "keep at most N checkpoints", ge=1)
    eval_steps: int = opt(0, "dev loss every N steps (0: at the end only, when dev_file is set)", ge=0)
    seed: int = opt(42, "random seed (data order, dropout, adapter initialisation)", ge=0, lt=2**32)
    optim: str = opt("adamw_torch", "optimizer name as in TrainingArguments")
    resume: bool = opt(False, "resume from the newest checkpoint in output_dir")
    overwrite: bool = opt(False, "replace a non-empty output_dir (otherwise that is an error)")
    time_budget_minutes: float = opt(
        0.0, "stop cleanly after this many minutes of training and final dev loss (0: none): training ends early "
        "enough to leave the dev loss its time (loading and tokenizing come before); with max_steps -1 the learning rate "
        "decays (cosine to 10%) over whichever ends first, the budget or the planned steps", ge=0)
    dataloader_num_workers: int = opt(0, "data loader worker processes", ge=0)
    stop_file: str = opt("", "stop cleanly (and save) at the first step end where this file exists: the web "
                         "UI's Stop button ('' : none)")
    extra: dict = opt({}, "any other TrainingArguments, passed through as given")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = opt(
        [], "experiment trackers that get the losses, tunelab's figures and the resolved config: tensorboard "
        "(event files in RUN/tensorboard), mlflow (a file store in RUN/mlruns unless MLFLOW_TRACKING_URI is set), "
        "wandb (offline in RUN/wandb unless WANDB_MODE is set); needs `pip install -e '.[track]'`")
    fsdp: Literal["", "full_shard", "shard_grad_op"] = opt(
        "", "FSDP under torchrun/accelerate: full_shard (weights, gradients, optimizer state) or shard_grad_op "
        "(gradients, optimizer state); each decoder layer is one FSDP unit; '' (none): plain DDP")
    deepspeed: str = opt("", "DeepSpeed ZeRO: zero2, zero3 (recipes/deepspeed/*.json) or a DeepSpeed JSON path; "
                         "its 'auto' values come from this config; needs `pip install -e '.[deepspeed]'`")
    ddp_timeout: int = opt(600, "seconds a rank waits for the others in a collective before it stops with an "
                           "error (a rank that died on another node)", ge=1)


@dataclass
class EvalConfig:
    dev_items: int = opt(0, "after training, generate and score this many dev items (0: dev loss only)", ge=0)
    max_new_tokens: int = opt(256, "longest generated turn", ge=1)
    batch_size: int = opt(8, "items per generate call (decode batch) or per decode pass (decode dialog)", ge=1)
    decode: Literal["dialog", "batch"] = opt("dialog", "dialog (one KV cache per dialog, the gold turn checked as a draft; greedy "
                      "outputs, fastest with a trained model) or batch (left-padded batches of items)")
    limit: int = opt(0, "evaluate at most N items (0: all)", ge=0)
    temperature: float = opt(0.0, "0: greedy; above 0: sampling", ge=0)
    top_p: float = opt(1.0, "nucleus sampling mass", gt=0, le=1)


@dataclass
class ServeConfig:
    """`tunelab serve` (the OpenAI-compatible API) and `tunelab webui`."""

    host: str = opt("127.0.0.1", "address to bind (the default is loopback only)")
    port: int = opt(8000, "API port", ge=1, le=65535)
    webui_port: int = opt(7860, "web page port", ge=1, le=65535)
    api_key: str = opt("", "require 'Authorization: Bearer KEY' (default: env TUNELAB_API_KEY; empty: none)")
    execute_tools: bool = opt(False, "run the runs' domain tools server-side for clients that send no tools")
    max_tokens_cap: int = opt(512, "a request's max_tokens above this is lowered to it", ge=1)
    queue_size: int = opt(8, "requests admitted at once (running + waiting); more get 429", ge=1)
    batch_max: int = opt(16, "requests generated at once, those of one run decoding together in one forward pass "
                         "per step (1: one request at a time)", ge=1)
    timeout_s: float = opt(120.0, "seconds a request may take before 504 (its generation stops then)", gt=0)
    max_body_bytes: int = opt(1_000_000, "larger request bodies get 413", ge=1)
    max_prompt_tokens: int = opt(0, "longer prompts get 400 context_length_exceeded (0: the model's context)",
                                 ge=0)
    stuck_margin_s: float = opt(30.0, "/health answers 503 once a job runs this long past timeout_s", ge=0)


@dataclass
class PreferenceConfig:
    """The preference tasks (data.task dpo, orpo, simpo, kto), on TRL's trainers."""

    beta: float = opt(0.1, "dpo/kto: how far from the reference the policy may move (KL weight); orpo: the odds-"
                      "ratio weight lambda; simpo: the reward scale", gt=0)
    simpo_gamma: float = opt(0.5, "simpo: target reward margin", ge=0)
    desirable_weight: float = opt(1.0, "kto: loss weight of desirable completions (raise it when they are fewer)", gt=0)
    undesirable_weight: float = opt(1.0, "kto: loss weight of undesirable completions", gt=0)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    pref: PreferenceConfig = field(default_factory=PreferenceConfig)
