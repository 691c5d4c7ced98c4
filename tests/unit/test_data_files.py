"""data.train_file / dev_file as a list of files: config load, rows concatenated, cache key, run inputs."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLE
from tunelab.config import load_config
from tunelab.data.cache import cache_key
from tunelab.data.dataset import data_files, read_data
from tunelab.data.readers import read_conversations
from tunelab.train.job import run_inputs
from tunelab.utils.errors import ConfigError, DataError


class _Tok:  # enough of a tokenizer for cache_key
    def get_vocab(self):
        return {"a": 0}

    def __len__(self):
        return 1


def test_list_and_string_forms_load():
    cfg = load_config(overrides=["--data.train_file=[a.jsonl, b.jsonl]", "--data.dev_file=c.jsonl"])
    assert cfg.data.train_file == ["a.jsonl", "b.jsonl"] and cfg.data.dev_file == "c.jsonl"
    assert data_files(cfg.data.train_file) == ["a.jsonl", "b.jsonl"] and data_files("") == []
    assert run_inputs(cfg) == ["a.jsonl", "b.jsonl", "c.jsonl"]
    with pytest.raises(ConfigError, match=r"data.train_file: expected str or list, got \[1, 2\]"):
        load_config(overrides={"data": {"train_file": [1, 2]}})


def test_two_files_give_the_rows_of_both(tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text(SAMPLE.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    cfg = load_config(overrides={"data": {"train_file": [str(SAMPLE), str(other)]}})
    convs, skipped = read_data(cfg.data.train_file, cfg.data)
    one, _ = read_conversations(SAMPLE)
    assert len(convs) == len(one) + 1 and skipped == 0
    capped = load_config(overrides={"data": {"max_samples": len(one) + 1}}).data
    assert len(read_data([str(SAMPLE), str(other), str(SAMPLE)], capped)[0]) == len(one) + 1  # a cap on the total
    with pytest.raises(DataError, match="missing.jsonl"):
        read_data([str(SAMPLE), str(tmp_path / "missing.jsonl")], cfg.data)


def test_cache_key_covers_every_file_of_a_list(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("x\n")
    b.write_text("y\n")
    keys = {cache_key(p, _Tok(), "chatml", "", 64) for p in (str(a), [str(a)], [str(a), str(b)], [str(b), str(a)])}
    assert len(keys) == 3  # a single file and a one-file list are the same data
    with pytest.raises(DataError, match="nope.jsonl: data file not found"):
        cache_key([str(a), str(tmp_path / "nope.jsonl")], _Tok(), "chatml", "", 64)
