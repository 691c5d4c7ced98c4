"""Import a GGUF file once into a safetensors model directory, cached by the file's sha256."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

from tunelab.models.compat import drop_quantizer
from tunelab.utils.dist import main_first
from tunelab.utils.errors import ModelError
from tunelab.utils.log import log
from tunelab.utils.paths import cache_dir


def _hash_index() -> Path:
    return cache_dir() / "gguf" / "hashes.json"


def file_sha256(path: Path, compute: bool = True) -> str | None:
    """sha256 of the file, remembered per (path, size, mtime) so a second load skips the read."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = _hash_index()
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    if key in index or not compute:
        return index.get(key)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    index[key] = digest.hexdigest()
    index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = index_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(index_path)
    return index[key]


def cached_dir_for(gguf: Path, compute: bool = True) -> Path | None:
    sha = file_sha256(gguf, compute=compute)
    if sha is None:
        return None
    out = cache_dir() / "models" / sha[:24]
    return out if (out / "config.json").is_file() or compute else None


def import_gguf(gguf: Path) -> Path:
    """Return a model directory for `gguf`, converting it (30-70 s) only the first time. Under torchrun rank 0
    converts and the other ranks wait, then read its directory (two conversions would race for one name)."""
    return main_first(lambda: _import_gguf(gguf))


def _import_gguf(gguf: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = cached_dir_for(gguf)
    if (out / "config.json").is_file():
        return out
    log.info(f"importing {gguf.name} into {out} (once; later loads read the cache)")
    start = time.time()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as e:  # transformers raises many types for unsupported GGUF architectures
        raise ModelError(f"{gguf}: cannot import this GGUF file ({type(e).__name__}: {e})") from None
    # The weights are dequantized to float32 already; drop the GGUF quantizer so it saves plainly.
    drop_quantizer(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(f"imported in {time.time() - start:.0f} s")
    return out
