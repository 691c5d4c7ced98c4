"""Dialog synthesizer: determinism, grounding of every search, structure, and the 8:1:1 split."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tunelab.domains.hotel import build_db, connect, search_hotels, synthesize, validate_arguments, write_splits

from tunelab.domains.hotel.dialog import CLOSINGS

N = 400


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "hotels.db"
    build_db(path, seed=0, n=200)
    return path


@pytest.fixture(scope="module")
def dialogs(db_path):
    return synthesize(db_path, N, seed=7)


def content(d):
    return json.dumps(d["dialog"], ensure_ascii=False, sort_keys=True)


def test_deterministic_per_seed(db_path, dialogs):
    assert synthesize(db_path, 50, seed=7) == synthesize(db_path, 50, seed=7)
    assert synthesize(db_path, 50, seed=7) != synthesize(db_path, 50, seed=8)


def test_count_ids_and_uniqueness(dialogs):
    assert len(dialogs) == N
    assert len({d["id"] for d in dialogs}) == N
    assert len({content(d) for d in dialogs}) == N


def test_searches_are_valid_and_grounded(db_path, dialogs):
    conn = connect(db_path)
    try:
        for d in dialogs:
            turns = d["dialog"]
            for i, t in enumerate(turns):
                if t["role"] == "search":
                    assert validate_arguments(t["arguments"]) == [], (d["id"], t)
                    assert turns[i + 1]["role"] == "return"
                    fresh = search_hotels(conn, t["arguments"])
                    assert fresh["ok"] and turns[i + 1]["records"] == fresh["records"], d["id"]
                if t["role"] == "return":
                    assert turns[i - 1]["role"] == "search" and len(t["records"]) <= 5
    finally:
        conn.close()


def test_dialog_structure(dialogs):
    for d in dialogs:
        turns = d["dialog"]
        roles = [t["role"] for t in turns]
        assert roles[0] == "user" and roles[-1] == "assistant", d["id"]
        assert 1 <= roles.count("search") <= 5
        for t in turns:
            if t["role"] in ("user", "assistant"):
                assert isinstance(t["content"], str) and t["content"].strip()
        # after a non-empty constraint search the assistant names one of the records
        for i, t in enumerate(turns):
            if t["role"] == "return" and t["records"] and "name" not in turns[i - 1]["arguments"]:
                said = turns[i + 1]["content"]
                assert turns[i + 1]["role"] == "assistant"
                assert any(r["name"] in said for r in t["records"]), (d["id"], said)


def test_empty_results_get_a_none_found_reply(dialogs):
    seen = 0
    for d in dialogs:
        turns = d["dialog"]
        for i, t in enumerate(turns):
            if t["role"] == "return" and not t["records"]:
                seen += 1
                assert any(w in turns[i + 1]["content"] for w in ("没有", "抱歉")), turns[i + 1]
    assert seen > 0


def test_kinds_and_closing_share(dialogs):
    kinds = Counter(d["kind"] for d in dialogs)
    assert len(kinds) >= 6, kinds
    pairs = [(d["dialog"][-2].get("content"), d["dialog"][-1]["content"]) for d in dialogs]
    closing = sum(pair in CLOSINGS for pair in pairs) / N
    assert 0.35 <= closing <= 0.55, closing


def test_arguments_only_use_canonical_facilities(db_path, dialogs):
    conn = connect(db_path)
    known = {f for (f,) in conn.execute("SELECT DISTINCT facility FROM facilities")}
    conn.close()
    for d in dialogs:
        for t in d["dialog"]:
            if t["role"] == "search":
                assert set(t["arguments"].get("facilities", [])) <= known


def test_write_splits(tmp_path, dialogs):
    stats = write_splits(dialogs, tmp_path / "out", seed=1)
    splits = {}
    for name in ("train", "dev", "test"):
        lines = (tmp_path / "out" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        splits[name] = [json.loads(line) for line in lines]
        assert stats[name] == len(lines)
    assert sum(stats[n] for n in ("train", "dev", "test")) == N
    assert abs(stats["train"] / N - 0.8) < 0.03 and abs(stats["dev"] / N - 0.1) < 0.03
    ids = [{d["id"] for d in rows} for rows in splits.values()]
    texts = [{content(d) for d in rows} for rows in splits.values()]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not ids[a] & ids[b] and not texts[a] & texts[b]
    for kind, total in stats["by_kind"].items():  # stratified: each kind's test share is about 10%
        in_test = sum(d["kind"] == kind for d in splits["test"])
        assert abs(in_test - total * 0.1) <= 1
    again = write_splits(dialogs, tmp_path / "again", seed=1)
    assert again == stats
    assert (tmp_path / "again/dev.jsonl").read_bytes() == (tmp_path / "out/dev.jsonl").read_bytes()
    write_splits(dialogs, tmp_path / "other", seed=2)
    assert (tmp_path / "other/dev.jsonl").read_bytes() != (tmp_path / "out/dev.jsonl").read_bytes()


def test_write_splits_drops_duplicate_content(tmp_path, dialogs):
    copy = {**dialogs[0], "id": "dup"}
    stats = write_splits(dialogs[:50] + [copy], tmp_path, seed=0)
    assert stats["duplicates_dropped"] == 1
    assert sum(stats[n] for n in ("train", "dev", "test")) == 50
