"""Tokenization cache: keys follow every input that shapes the rows; hits skip the build."""

import pytest

from tests.conftest import SAMPLE, make_tokenizer
from tunelab.data.cache import cache_key, load_or_build
from tunelab.data.dataset import DatasetStats


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def test_key_changes_with_what_shapes_the_rows(tmp_path, tok):
    data = tmp_path / "d.jsonl"
    data.write_bytes(SAMPLE.read_bytes())
    base = cache_key(data, tok, "chatml", "", 512)
    assert base == cache_key(data, tok, "chatml", "", 512)
    assert base != cache_key(data, tok, "chatml", "", 256)
    assert base != cache_key(data, tok, "plain", "", 512)
    assert base != cache_key(data, tok, "chatml", "be nice", 512)
    assert base != cache_key(data, tok, "chatml", "", 512, skip_invalid=True)
    other_tok = make_tokenizer(tmp_path / "tok2", extra_text="龘")
    assert base != cache_key(data, other_tok, "chatml", "", 512)
    data.write_bytes(SAMPLE.read_bytes() + b"\n")
    assert base != cache_key(data, tok, "chatml", "", 512)


def test_miss_then_hit(tmp_path):
    calls = []
    rows = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "weight": 0.5},
            {"input_ids": [], "labels": [], "weight": 2.0}]

    def build():
        calls.append(1)
        return rows, DatasetStats(conversations=2, tokens=3)

    got, stats, hit, saved = load_or_build("k1", build, tmp_path)
    assert (got, hit, saved, len(calls)) == (rows, False, None, 1)
    got, stats, hit, saved = load_or_build("k1", build, tmp_path)
    assert got == rows and hit and len(calls) == 1 and saved is not None and saved >= 0
    assert isinstance(stats, DatasetStats) and stats.tokens == 3
    assert load_or_build("k1", build, tmp_path, no_cache=True)[2] is False and len(calls) == 2
    assert load_or_build("k2", build, tmp_path)[2] is False and len(calls) == 3
    (tmp_path / "k1.npz").write_bytes(b"garbage")  # a corrupt entry is rebuilt, not fatal
    got, _, hit, _ = load_or_build("k1", build, tmp_path)
    assert got == rows and not hit and len(calls) == 4
    assert load_or_build("k1", build, tmp_path)[2] is True
