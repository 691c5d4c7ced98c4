"""`data.task: sft`: chat fine-tuning on whole dialogs, labels on assistant and tool-call turns."""

from __future__ import annotations

from pathlib import Path

from tunelab.config import Config
from tunelab.data.dataset import data_files, read_data, train_source
from tunelab.data.tools import merge_specs, tools_of
from tunelab.train.tasks.base import Prepared, Task, apply_method, dev_config, load_causal, register_task, tokenized
from tunelab.utils.log import log


def prepare(cfg: Config, device: str) -> Prepared:
    source = train_source(cfg.data)  # data.train_files (a weighted mix) or data.train_file
    train_data = read_data(source, cfg.data)  # bad data fails before a model loads
    dev_data = read_data(cfg.data.dev_file, dev_config(cfg)) if cfg.data.dev_file else None
    method, model, tokenizer, model_dir, template, renderer = load_causal(cfg, device)
    train_rows, train_stats = tokenized(source, train_data, cfg.data, renderer)
    log.info(train_stats.line(f"train data ({template.name} template)"))
    dev_rows = None
    if dev_data is not None:
        dev_rows, dev_stats = tokenized(cfg.data.dev_file, dev_data, dev_config(cfg), renderer)
        log.info(dev_stats.line("dev data"))
    model = apply_method(cfg, method, model, device)
    summary = {"template": template.name, "system_prompt": cfg.data.system_prompt,
               "tool_results": cfg.data.tool_results, "record_view": cfg.data.record_view, "packing": cfg.data.packing, "train_data": train_stats.__dict__,
               # the tool specs the model saw in its prompts: chat and serve offer them again
               "tools": merge_specs(*(tools_of(c.turns) for c in train_data[0]))}
    return Prepared(model, tokenizer, model_dir, method, train_rows, dev_rows, template=template,
                    renderer=renderer, summary=summary)


def evaluate(cfg: Config, prepared: Prepared, run_dir: Path) -> dict | None:
    """Task metrics on `eval.dev_items` dev items (generation), beside the dev loss."""
    if not (cfg.eval.dev_items and cfg.data.dev_file):
        return None
    from tunelab.evaluate.job import evaluate as evaluate_run
    from tunelab.infer.engine import ChatEngine, load_engine

    # the trained model in memory, unless its frozen weights are bf16 (then from disk, as `tunelab evaluate` does)
    engine = load_engine(run_dir, trust_remote_code=cfg.model.trust_remote_code) if prepared.frozen_bf16 else ChatEngine(
        prepared.model, prepared.tokenizer, prepared.template, cfg.data.system_prompt, domain=cfg.data.domain,
        db=str(Path(cfg.data.db).resolve()) if cfg.data.db else "", record_view=prepared.renderer.view)
    # a list's first file is the one data.db answers for (real rows of a mix come from their own DB)
    return evaluate_run(run_dir, data_files(cfg.data.dev_file)[0], limit=cfg.eval.dev_items, batch_size=cfg.eval.batch_size,
                        max_new_tokens=cfg.eval.max_new_tokens, db=cfg.data.db or None, engine=engine,
                        decode=cfg.eval.decode)


TASK = register_task(Task("sft", "chat fine-tuning: whole dialogs, loss on assistant and tool-call turns",
                          prepare, evaluate))
