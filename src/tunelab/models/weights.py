"""Weight files of a run directory as untrusted input: safetensors only, headers checked, sha256 recorded.

A pickle file (`*.bin`) can run code when loaded, so a run holding one is refused. A safetensors file
is checked before any loader sees it: a header that parses, tensors whose byte ranges match their
shapes and dtypes and cover the file exactly. Bit flips inside tensor data pass that check; the
sha256 of each weight file, recorded by training in run.json (`checksums`), catches them.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path

from tunelab.utils.errors import ModelError

PICKLE_PATTERNS = ("adapter_model*.bin", "pytorch_model*.bin")
WEIGHT_PATTERNS = ("adapter_model.safetensors", "model*.safetensors")
MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def weight_files(directory: str | Path) -> list[Path]:
    """The weight files training writes in a run dir: adapter_model.safetensors or model*.safetensors."""
    directory = Path(directory)
    return sorted({p for pattern in WEIGHT_PATTERNS for p in directory.glob(pattern) if p.is_file()})


def refuse_pickles(directory: str | Path) -> None:
    """ModelError when `directory` holds pickle weights (loading them may run code)."""
    found = sorted(p.name for pattern in PICKLE_PATTERNS for p in Path(directory).glob(pattern))
    if found:
        raise ModelError(f"{Path(directory) / found[0]}: pickle weights are not loaded (they can run code); "
                         "only safetensors files are accepted")


def check_safetensors(path: str | Path) -> None:
    """ModelError naming `path` unless its header parses and its tensors cover the file exactly."""
    path = Path(path)

    def bad(reason: str) -> ModelError:
        return ModelError(f"{path}: not a valid safetensors file ({reason}); the file is truncated or corrupt")

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes, shorter than the 8-byte header length")
        n = struct.unpack("<Q", head)[0]
        if n > MAX_HEADER or 8 + n > size:
            raise bad(f"header length {n} does not fit in {size} bytes")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("the header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    end = 0
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = spec["data_offsets"]
            want = math.prod(spec["shape"]) * DTYPE_BYTES[spec["dtype"]]
            ok = all(isinstance(x, int) and x >= 0 for x in [begin, stop, *spec["shape"]])
        except (TypeError, KeyError, ValueError):
            raise bad(f"tensor {name!r} has no valid dtype, shape and data_offsets") from None
        if not ok or stop - begin != want:
            raise bad(f"tensor {name!r} spans {stop - begin} bytes, its shape and dtype need {want}")
        end = max(end, stop)
    if 8 + n + end != size:
        raise bad(f"tensor data ends at byte {8 + n + end}, the file has {size}")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weight_checksums(directory: str | Path) -> dict[str, str]:
    """{file name: sha256} of the run's weight files, for run.json."""
    return {p.name: sha256_file(p) for p in weight_files(directory)}


def verify_run_weights(directory: str | Path, checksums: dict | None) -> None:
    """Refuse pickles, check every weight file's header and, when run.json recorded checksums, its sha256.

    A run without recorded checksums (made before they were recorded) gets the header checks only.
    """
    directory = Path(directory)
    refuse_pickles(directory)
    files = weight_files(directory)
    for p in files:
        check_safetensors(p)
    if checksums is None:
        return
    if not (isinstance(checksums, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in checksums.items())):
        raise ModelError(f"{directory / 'run.json'}: 'checksums' must map weight file names to sha256 hex strings")
    for p in files:
        if p.name not in checksums:
            raise ModelError(f"{p}: a weight file run.json does not list under 'checksums'; it was not written "
                             "by this run's training")
    for name, digest in sorted(checksums.items()):
        p = directory / name
        if Path(name).name != name or not p.is_file():
            raise ModelError(f"{p}: listed in run.json 'checksums' but missing from the run directory")
        if sha256_file(p) != digest:
            raise ModelError(f"{p}: sha256 does not match run.json 'checksums'; the file changed or is corrupt")
