"""A run's model card: README.md with hub YAML metadata (base model, licence, datasets, evaluation
results) and a body with the evaluation table, the recipe and the training figures.

It lives beside the evaluation report because it is one: the run's numbers, for a model hub. The card
is checked offline by huggingface_hub's own parser (`ModelCard`, `ModelCardData`, model-index)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tunelab.config.run_dir import RunDir
from tunelab.evaluate.report import ROWS, metrics_table
from tunelab.utils.errors import ConfigError

# hub ids and licence ids of the embedded presets (their GGUF files carry the same weights)
PRESET_HUB = {"smollm2-135m-instruct": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
              "gemma3-270m": ("google/gemma-3-270m", "gemma")}
METRIC_TYPES = dict(ROWS)


def _evaluations(run: RunDir) -> dict[str, dict]:
    """{data name: metrics} from the run's eval-* directories, else its dev metrics."""
    out = {}
    for metrics in sorted(run.path.glob("eval-*/metrics.json")):
        try:
            m = json.loads(metrics.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(m, dict):
            out[metrics.parent.name[len("eval-"):]] = m
    dev = run.summary().get("dev_metrics")
    if not out and isinstance(dev, dict):
        out["dev"] = dev
    return out


def _file_names(value) -> list[str]:
    files = value if isinstance(value, list) else [value] if value else []
    return [Path(str(f)).name for f in files]


def card_text(run_dir: str | Path, merged: bool, figures: list[str]) -> str:
    """README.md for a published run; `figures` are paths relative to the card."""
    from huggingface_hub import EvalResult, ModelCardData

    run = RunDir.open(run_dir)
    cfg, summary = run.config(), run.summary()
    base = cfg.model.name_or_path
    hub_id, licence = PRESET_HUB.get(base, (Path(base).name if Path(base).exists() else base, "other"))
    evals = _evaluations(run)
    results = []
    for data, metrics in evals.items():
        for key, label in METRIC_TYPES.items():
            if isinstance(metrics.get(key), (int, float)):
                results.append(EvalResult(task_type="text-generation", dataset_type=data, dataset_name=data,
                                          metric_type=key, metric_name=label, metric_value=float(metrics[key])))
    method = summary.get("method", cfg.method.name)
    data = ModelCardData(
        base_model=hub_id, license=licence, library_name="transformers" if merged else "peft",
        pipeline_tag="text-generation", datasets=_file_names(cfg.data.train_file) or None,
        tags=["tunelab", method, cfg.data.domain] if cfg.data.domain else ["tunelab", method],
        model_name=run.path.name if results else None, eval_results=results or None)
    recipe = yaml.safe_dump(json.loads(json.dumps(_recipe(cfg, hub_id))), allow_unicode=True, sort_keys=False)
    what = " (adapter merged into the weights)." if merged else " (a PEFT adapter; load it on the base model)."
    lines = [f"# {run.path.name}", "", f"A {method} fine-tune of `{hub_id}` made with tunelab{what}",
             "", "## Use", "", "```python", _usage(merged, hub_id), "```", "",
             f"Chat template: tunelab `{summary.get('template', cfg.data.template)}`, shipped as the tokenizer's "
             "`chat_template` (tool results as the run read them: `data.tool_results: "
             f"{summary.get('tool_results', cfg.data.tool_results)}`).", ""]
    if cfg.data.record_view != "full":
        lines += [f"It read tool records through the `{cfg.data.domain}` domain's view (`data.record_view: "
                  f"{cfg.data.record_view}`; hotel: of each record's facilities only those the search or the guest "
                  "names). tunelab's chat, serve and evaluate apply it; the shipped template renders records as it "
                  "is given them, so cut them the same way before.", ""]
    lines += ["## Evaluation", ""]
    for name, metrics in evals.items():
        lines += [f"On `{name}`:", "", metrics_table(metrics), ""]
    if not evals:
        lines += ["No evaluation was run (`tunelab evaluate RUN --data FILE` adds one).", ""]
    lines += ["## Training", "", _facts(summary), "", "Recipe (tunelab config):", "", "```yaml", recipe.rstrip(),
              "```", ""]
    lines += [f"![{Path(f).stem}]({f})" for f in figures]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines).rstrip() + "\n"


def _recipe(cfg, hub_id: str) -> dict:
    """The config as trained, local paths cut to file names: they say nothing to a reader of the hub page."""
    import dataclasses

    d = dataclasses.asdict(cfg)
    d["model"]["name_or_path"] = hub_id
    for key in ("train_file", "dev_file", "db"):
        if key in d["data"]:
            names = _file_names(d["data"][key])
            d["data"][key] = names if isinstance(d["data"][key], list) else (names[0] if names else "")
    d["train"]["output_dir"] = Path(str(d["train"].get("output_dir", ""))).name
    return d


def _facts(summary: dict) -> str:
    keys = [("steps", "steps"), ("train_loss", "train loss"), ("dev_loss", "dev loss"),
            ("train_time_s", "time (s)"), ("tokens_per_s", "tokens/s"), ("trainable_params", "trainable parameters"),
            ("device", "device")]
    rows = [f"| {label} | {round(summary[k], 4) if isinstance(summary[k], float) else summary[k]} |"
            for k, label in keys if summary.get(k) is not None]
    return "\n".join(["| fact | value |", "|---|---|", *rows])


def _usage(merged: bool, hub_id: str) -> str:
    if merged:
        return ("from transformers import AutoModelForCausalLM, AutoTokenizer\n"
                "tok = AutoTokenizer.from_pretrained(REPO)\nmodel = AutoModelForCausalLM.from_pretrained(REPO)\n"
                "ids = tok.apply_chat_template([{'role': 'user', 'content': 'Hi'}], add_generation_prompt=True, "
                "return_tensors='pt')\nprint(tok.decode(model.generate(ids, max_new_tokens=64)[0]))")
    return (f"from peft import AutoPeftModelForCausalLM  # base: {hub_id}\n"
            "model = AutoPeftModelForCausalLM.from_pretrained(REPO)")


def validate_card(text: str) -> None:
    """ConfigError naming the problem when huggingface_hub's offline parser rejects the card."""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(text)  # parses the YAML and the model-index; raises on bad metadata
        card.data.to_dict()
    except Exception as e:  # noqa: BLE001  huggingface_hub raises ValueError, TypeError and yaml errors alike
        raise ConfigError(f"model card: huggingface_hub rejects it ({type(e).__name__}: {str(e)[:300]})") from None
