"""The tokenizer keys of a GGUF file: copied from the base's own GGUF when there is one, else built
from the Hugging Face tokenizer (byte-level BPE as `gpt2`, sentencepiece-style BPE as `llama`)."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.utils.errors import ModelError

NORMAL, CONTROL, USER_DEFINED = 1, 3, 4  # llama.cpp token types


def copy_tokenizer_keys(writer, source_gguf: Path) -> None:
    """Every `tokenizer.*` key of `source_gguf` except its chat template (tunelab writes its own)."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(source_gguf))
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer.") or key == "tokenizer.chat_template":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)


def _token_list(tokenizer) -> tuple[list[str], list[int]]:
    vocab = tokenizer.get_vocab()
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]  # holes in the id space, as llama.cpp's converter fills them
    types = [USER_DEFINED] * n
    for tok, i in vocab.items():
        tokens[i], types[i] = tok, NORMAL
    for i, added in tokenizer.added_tokens_decoder.items():
        types[i] = CONTROL if added.special else USER_DEFINED
    return tokens, types


def build_tokenizer_keys(writer, tokenizer, sentencepiece_family: bool = False) -> None:
    """Vocabulary, merges and special ids of a fast tokenizer, in llama.cpp's key names.

    `sentencepiece_family`: the architecture's GGUF reader builds a sentencepiece tokenizer (Gemma),
    so a vocabulary that is not byte-level is written as one."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model") or {}
    kind = model.get("type")
    if kind not in ("BPE", "WordLevel"):
        raise ModelError(f"--gguf: a {kind} tokenizer cannot be written to GGUF here; covered: BPE, WordLevel")
    byte_level = "ByteLevel" in json.dumps(spec.get("pre_tokenizer"))
    tokens, types = _token_list(tokenizer)
    # a byte-level or character vocabulary reads back as gpt2 (bytes); sentencepiece-style BPE as llama
    sentencepiece = not byte_level and (kind == "BPE" or sentencepiece_family)
    writer.add_tokenizer_model("llama" if sentencepiece else "gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_scores([-float(i) for i in range(len(tokens))])  # earlier tokens merge first
    merges = model.get("merges") or []
    if merges:
        writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    for name, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                      ("unk", writer.add_unk_token_id), ("pad", writer.add_pad_token_id)):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))


def source_gguf(name_or_path: str) -> Path | None:
    """The GGUF file a base model was imported from (a preset or a .gguf path), else None."""
    from tunelab.models.presets import PRESETS

    if name_or_path in PRESETS:
        return PRESETS[name_or_path].locate()
    path = Path(name_or_path).expanduser()
    return path if path.is_file() and path.suffix == ".gguf" else None


def tokenizer_metadata(engine, run_dir, chat_template: str):
    """A `metadata(writer)` for gguf_write.write_gguf: the tokenizer keys, the chat template, and the
    end-of-turn id (llama.cpp stops there)."""
    from tunelab.config.run_dir import RunDir

    source = source_gguf(RunDir.open(run_dir).config().model.name_or_path)
    end = engine.renderer.ids(engine.template.end_text())

    def write(writer) -> None:
        if source is not None:
            copy_tokenizer_keys(writer, source)
        else:
            build_tokenizer_keys(writer, engine.tokenizer, engine.model.config.model_type.startswith("gemma"))
        writer.add_chat_template(chat_template)
        if len(end) == 1 and not any("tokenizer.ggml.eot_token_id" in kv for kv in writer.kv_data):
            writer.add_eot_token_id(end[0])

    return write
