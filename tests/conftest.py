"""Shared fixtures: a tiny random model and a tokenizer built offline, from a config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE = REPO / "src/tunelab/data/samples/hotel_sample.jsonl"
EXTRA_CHARS = "你是助手酒店预订用工具查询再根据结果回答好的谢不客气"
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<|im_start|>", "<|im_end|>",
            "<start_of_turn>", "<end_of_turn>"]


def make_tokenizer(out: Path, extra_text: str = ""):
    """A character-level tokenizer over ASCII + the sample's characters, with chat special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(chr(i) for i in range(32, 127)) | set(SAMPLE.read_text(encoding="utf-8")) | set(extra_text) | set(EXTRA_CHARS) | {"\n"})
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<bos>", unk_token="<unk>",
                                   additional_special_tokens=SPECIALS[4:])
    fast.chat_template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    fast.save_pretrained(out)
    return fast


def make_tiny_model(out: Path, family: str = "llama"):
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig

    tok = make_tokenizer(out)
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    if family == "gemma":
        cfg = Gemma3TextConfig(head_dim=16, sliding_window=64, final_logit_softcapping=30.0, **common)
    else:
        cfg = LlamaConfig(**common)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny_llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny_gemma"), "gemma")


@pytest.fixture
def sample_path() -> Path:
    return SAMPLE


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def greedy_reply(engine, turns, max_new_tokens: int):
    """The next turn by a plain argmax loop over the engine's model (no `generate`): what `engine.reply` must give."""
    import torch

    ids = engine.renderer.prompt_ids(turns)
    out = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            seq = torch.tensor([ids + out])
            logits = engine.model(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[0, -1]
            nxt = int(logits.argmax())
            if nxt in engine.stop_ids:
                break
            out.append(nxt)
    return engine.template.parse_reply(engine.tokenizer.decode(out, skip_special_tokens=False))
