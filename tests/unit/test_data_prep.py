"""`tunelab data ...`: validate, clean, balance, split, convert, stats on small files written here."""

import argparse
import csv
import json
import random
from collections import Counter

import pytest

from tests.conftest import SAMPLE, make_tokenizer, write_jsonl
from tunelab.cli.data import add_data_parser
from tunelab.data.prep import (balance_rows, check_leakage, clean_file, convert_file, dataset_stats, kfold_rows,
                               normalize_text, plot_lengths, split_file, split_rows, validate_file)
from tunelab.data.prep.minhash import NearDuplicateIndex
from tunelab.data.prep.rows import load_rows
from tunelab.data.readers import read_conversations
from tunelab.utils.errors import DataError


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def run_cli(*argv):
    p = argparse.ArgumentParser()
    add_data_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["data", *map(str, argv)])
    return args.fn(args, [])


def qa(q, a, **meta):
    return {**meta, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def long_text(seed, n=300):
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ,.") for _ in range(n))


def test_validate_reports_every_bad_row_with_its_reason(tmp_path):
    good = {"dialog": [{"role": "user", "content": "hi there"}, {"role": "search", "arguments": {"name": "A"}},
                       {"role": "return", "records": []}, {"role": "assistant", "content": "none"}]}
    rows = [
        json.dumps(good),                                                                   # 1 ok
        '{"messages": [{"role": "user", "content": "x"}',                                   # 2 malformed JSON
        json.dumps({"dialog": [{"role": "user", "content": 5}]}),                           # 3 wrong type
        json.dumps(qa("question", "")),                                                     # 4 empty turn
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "[]"},
                                 {"role": "assistant", "content": "a"}]}),                  # 5 result w/o call
        json.dumps({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"},
                                 {"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}]}),  # 6
        json.dumps(qa("q" * 50, "a" * 60)),                                                 # 7 oversize
        json.dumps({"foo": 1}),                                                             # 8 unknown format
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = validate_file(path, max_chars=100)
    by_line = {}
    for where, reason in report.errors:
        by_line.setdefault(int(where.rsplit(":", 1)[1]), []).append(reason)
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8]
    assert "invalid JSON" in by_line[2][0]
    assert "'content' must be a string" in by_line[3][0]
    assert "empty content" in by_line[4][0]
    assert "tool result without a preceding tool call" in by_line[5][0]
    assert any("comes before any user turn" in r for r in by_line[6])
    assert any("follows another user turn" in r for r in by_line[6])
    assert "oversize" in by_line[7][0] and "over the limit of 100" in by_line[7][0]
    assert "cannot tell the format" in by_line[8][0]
    assert not report.ok and report.rows == 8 and report.valid == 1 and report.invalid_rows == 7
    assert report.roles == Counter(user=1, tool_call=1, tool_result=1, assistant=1)
    assert report.turns_hist == Counter({4: 1})
    assert run_cli("validate", path, "--max-chars", "100") == 1


def test_validate_sample_ok_with_counts(capsys):
    report = validate_file(SAMPLE)
    assert report.ok and report.valid == report.rows == 6
    assert sum(report.turns_hist.values()) == 6 and report.roles["tool_call"] == 7
    assert run_cli("validate", SAMPLE) == 0
    assert "6 valid, 0 invalid" in capsys.readouterr().out


def test_normalize_text():
    assert normalize_text("  ＡＢＣ\u3000\u3000x  \r\n\n\n\nbye\u200b ") == "ABC x\n\nbye"
    assert normalize_text("def f():\n    return  1  ") == "def f():\n    return 1"  # indentation kept


def test_near_duplicate_index_merges_one_char_edit_not_shared_prefix():
    a = long_text(1)
    edit = a[:150] + ("X" if a[150] != "X" else "Y") + a[151:]
    shared_prefix = a[:100] + long_text(2, 200)
    index = NearDuplicateIndex(0.9)
    assert index.find_or_add(1, a) is None
    hit = index.find_or_add(2, edit)
    assert hit is not None and hit[0] == 1 and hit[1] > 0.9
    assert index.find_or_add(3, shared_prefix) is None


def test_clean_drops_each_kind_with_side_file(tmp_path):
    a = long_text(1)
    rows = [
        qa(a, "answer one", id=1),                                                 # 1 kept
        qa("  " + a.replace(" ", "  ") + " ", "answer one", id=2),                 # 2 exact dup after normalising
        qa(a[:150] + "Q" + a[151:], "answer one", id=3),                           # 3 near dup
        qa(a[:100] + long_text(2, 200), "answer two", id=4),                       # 4 kept: shares a prefix only
        qa("contact me at spam@example.com", "ok sure", id=5),                     # 5 regex
        qa("buy CHEAP pills now", "no thanks", id=6),                              # 6 keyword (case-insensitive)
        {"dialog": [{"role": "user", "content": "first question"}, {"role": "assistant", "content": "x"},
                    {"role": "user", "content": "second question"}, {"role": "assistant", "content": "fine"}]},  # 7
        qa("a question", " "),                                                     # 8 no target left
        {"instruction": "say something", "output": "k"},                            # 9 no target (alpaca)
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    with open(inp, "a", encoding="utf-8") as f:
        f.write("{not json\n")                                                      # 10 invalid
    kw = tmp_path / "kw.txt"
    kw.write_text("# comment\n\ncheap pills\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    report = clean_file(inp, out, drop_regex=[r"\S+@\S+\.com"], keywords_file=kw)
    kept = read_jsonl(out)
    assert [r.get("id") for r in kept] == [1, 4, None]
    assert kept[2]["dialog"][2]["content"] == "fine" and len(kept[2]["dialog"]) == 3  # the "x" turn is gone
    assert report.turns_removed == 1 and report.kept == 3 and report.read == 10
    assert dict(report.dropped) == {"duplicate": 1, "near_duplicate": 1, "regex": 1, "keyword": 1,
                                    "no_target": 2, "invalid": 1}
    side = {d["line"]: d for d in read_jsonl(tmp_path / "out.jsonl.dropped.jsonl")}
    assert side[2]["reason"] == "duplicate" and "line 1" in side[2]["detail"] and side[2]["row"] == rows[1]
    assert side[3]["reason"] == "near_duplicate" and "line 1" in side[3]["detail"]
    assert side[5]["reason"] == "regex" and side[5]["row"]["id"] == 5
    assert side[6]["reason"] == "keyword" and "cheap pills" in side[6]["detail"]
    assert side[8]["reason"] == side[9]["reason"] == "no_target"
    assert side[10]["reason"] == "invalid" and side[10]["row"] == "{not json"
    assert sorted(side) == [2, 3, 5, 6, 8, 9, 10]


def test_clean_cli_keeps_format_and_normalises(tmp_path, capsys):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"instruction": "ｈｅｌｌｏ   there", "output": "hi  you\n\n\n\nok"}])
    assert run_cli("clean", inp, tmp_path / "out.jsonl", "--near", "0") == 0
    assert read_jsonl(tmp_path / "out.jsonl") == [{"instruction": "hello there", "output": "hi you\n\nok"}]
    assert json.loads(capsys.readouterr().out)["kept"] == 1


def labelled(counts):
    return [{"text": f"{lab} {i}", "label": lab} for lab, n in counts.items() for i in range(n)]


def test_balance_down_up_weight():
    rows = labelled({"a": 6, "b": 3, "c": 1})
    down, rep = balance_rows(rows, "label", "down", seed=1)
    assert Counter(r["label"] for r in down) == {"a": 1, "b": 1, "c": 1} and rep.before == {"a": 6, "b": 3, "c": 1}
    assert balance_rows(rows, "label", "down", seed=1)[0] == down
    up, rep = balance_rows(rows, "label", "up", seed=1)
    assert Counter(r["label"] for r in up) == {"a": 6, "b": 6, "c": 6} == rep.after
    assert all(r in up for r in rows)
    weighted, rep = balance_rows(rows, "label", "weight")
    weights = [r["weight"] for r in weighted]
    assert len(weighted) == 10 and abs(sum(weights) / len(weights) - 1) < 1e-9
    assert weighted[-1]["weight"] == pytest.approx(10 / 3) and weighted[0]["weight"] == pytest.approx(10 / 18)


def test_balance_missing_field_names_line(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    with pytest.raises(DataError, match=r"x.jsonl:2: row has no field 'label'"):
        run_cli("balance", path, tmp_path / "o.jsonl", "--by", "label")


def test_split_reproducible_and_stratified():
    rows = [{"text": f"row {i}", "label": "x" if i % 10 < 7 else "y"} for i in range(100)]
    a = split_rows(rows, "8,1,1", stratify="label", seed=3)
    assert a == split_rows(rows, "8,1,1", stratify="label", seed=3)
    assert a != split_rows(rows, "8,1,1", stratify="label", seed=4)
    counts = {name: Counter(r["label"] for r in part) for name, part in a.items()}
    assert counts == {"train": {"x": 56, "y": 24}, "dev": {"x": 7, "y": 3}, "test": {"x": 7, "y": 3}}


def test_split_groups_and_duplicates_stay_together():
    rng = random.Random(0)
    rows = [{"text": f"t{i}", "user": f"u{rng.randrange(25)}"} for i in range(120)]
    rows += [{"text": "same", "user": "lonely1"}, {"text": "same", "user": "lonely2", "id": 9}]
    parts = split_rows(rows, [8, 1, 1], group="user", seed=0)
    home = {}
    for name, part in parts.items():
        for r in part:
            assert home.setdefault(r["user"], name) == name
    assert home["lonely1"] == home["lonely2"]  # identical content joins their groups
    assert sum(len(p) for p in parts.values()) == len(rows) and all(parts.values())


def test_leakage_check_fires():
    with pytest.raises(DataError, match="group g='1' is in both train"):
        check_leakage({"train": [{"text": "a", "g": 1}], "dev": [{"text": "b", "g": 1}]}, group="g")
    with pytest.raises(DataError, match="identical row content"):
        check_leakage({"train": [{"text": "a", "id": 1}], "test": [{"text": "a", "id": 2}]})


def test_kfold_each_row_in_one_dev_fold(tmp_path):
    rows = [{"text": f"r{i}", "g": i // 3, "label": i % 2} for i in range(31)]
    folds = kfold_rows(rows, 4, stratify="label", group="g", seed=0)
    devs = Counter(r["text"] for f in folds for r in f["dev"])
    assert devs == Counter(r["text"] for r in rows)
    for f in folds:
        assert len(f["train"]) + len(f["dev"]) == 31 and f["dev"]
    report = split_file(write_jsonl(tmp_path / "d.jsonl", rows), tmp_path / "out", kfold=4, group="g")
    assert sorted(report["splits"]) == sorted(f"fold_{i}/{n}" for i in range(4) for n in ("train", "dev"))
    assert (tmp_path / "out/fold_3/dev.jsonl").is_file()


def test_split_file_writes_three_files(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"r{i}"} for i in range(20)])
    assert run_cli("split", path, tmp_path / "s", "--ratios", "8,1,1", "--seed", "2") == 0
    sizes = {n: len(read_jsonl(tmp_path / f"s/{n}.jsonl")) for n in ("train", "dev", "test")}
    assert sizes == {"train": 16, "dev": 2, "test": 2}


def test_hotel_messages_hotel_round_trip(tmp_path):
    msgs = tmp_path / "m.jsonl"
    convert_file(SAMPLE, msgs, "messages")
    first = read_jsonl(msgs)[0]["messages"]
    call = first[1]["tool_calls"][0]["function"]
    assert call["name"] == "search_hotels" and isinstance(call["arguments"], str)
    assert first[2]["role"] == "tool" and first[2]["tool_call_id"] == first[1]["tool_calls"][0]["id"]
    convert_file(msgs, tmp_path / "h.jsonl", "hotel")
    assert read_jsonl(tmp_path / "h.jsonl") == read_jsonl(SAMPLE)


def test_messages_with_other_tool_to_hotel_names_line(tmp_path):
    row = {"messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": "{}"}}]}, {"role": "tool", "content": "{}"},
        {"role": "assistant", "content": "sunny"}]}
    path = write_jsonl(tmp_path / "m.jsonl", [qa("q", "a"), row])
    with pytest.raises(DataError, match=r"m.jsonl:2: turn 2 \(tool_call\): tool 'get_weather'"):
        convert_file(path, tmp_path / "h.jsonl", "hotel")


def test_csv_mapping_and_template_to_alpaca_and_text_label(tmp_path):
    src = tmp_path / "qa.csv"
    with open(src, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerows([["question", "answer", "topic"], ["几点退房？", "中午12点", "policy"],
                     ["有早餐吗", "有，7点开始", "food"]])
    convert_file(src, tmp_path / "a.jsonl", "alpaca", columns="question=instruction,answer=output",
                 prompt_template="问题：{question}")
    out = read_jsonl(tmp_path / "a.jsonl")
    assert out[0] == {"topic": "policy", "instruction": "问题：几点退房？", "input": "", "output": "中午12点"}
    convs, _ = read_conversations(tmp_path / "a.jsonl")
    assert convs[1].turns[1].content == "有，7点开始"
    convert_file(src, tmp_path / "t.jsonl", "text-label", columns="question=text,topic=label")
    assert read_jsonl(tmp_path / "t.jsonl")[1] == {"text": "有早餐吗", "answer": "有，7点开始", "label": "food"}
    with pytest.raises(DataError, match=r"qa.csv:2: --prompt-template names \{missing\}"):
        convert_file(src, tmp_path / "x.jsonl", "alpaca", columns="question=instruction,answer=output",
                     prompt_template="{missing}")


def test_datasets_dir_write_and_read(tmp_path):
    out = tmp_path / "ds"  # no suffix: a `datasets` directory
    assert run_cli("convert", SAMPLE, out, "--to", "messages") == 0
    assert (out / "dataset_info.json").is_file() and len(load_rows(out)) == 6
    convert_file(out, tmp_path / "h.jsonl", "hotel")
    assert read_jsonl(tmp_path / "h.jsonl") == read_jsonl(SAMPLE)
    assert len(read_conversations(out)[0]) == 6
    with pytest.raises(DataError, match="would not read back the same"):  # Arrow would null-pad search args
        convert_file(SAMPLE, tmp_path / "hotel_ds", "hotel")


def test_multi_turn_to_alpaca_history(tmp_path):
    row = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q1"},
                        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
                        {"role": "assistant", "content": "a2"}]}
    convert_file(write_jsonl(tmp_path / "m.jsonl", [row]), tmp_path / "a.json", "alpaca")
    (out,) = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert out == {"system": "be brief", "instruction": "q2", "input": "", "output": "a2", "history": [["q1", "a1"]]}


def test_stats_numbers_with_char_tokenizer(tmp_path):
    tok_dir = tmp_path / "tok"
    make_tokenizer(tok_dir)
    rows = [{"text": "ab", "label": "pos"}, {"instruction": "abcd", "output": "efghij", "label": "neg"},
            {"text": "xy", "label": "pos"}, "oops"]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    stats = dataset_stats(path, tok_dir, max_length=30)
    # chatml, char-level: user turn = <|im_start|> "user\n" body <|im_end|> "\n" = 1+5+len+1+1;
    # assistant turn = 1+10+len+1+1 ("pos" is the answer of a text-label row)
    assert stats.lengths == [8 + 2 + 13 + 3, 8 + 4 + 13 + 6, 8 + 2 + 13 + 3]
    assert stats.invalid == 1 and stats.rows == 4
    assert stats.truncated == 1 and stats.truncated_fraction == pytest.approx(1 / 3)
    assert stats.labels == {"pos": 2, "neg": 1} and stats.turns_hist == {2: 3}
    assert stats.as_dict()["length"]["p50"] == 26
    png = plot_lengths(stats, tmp_path / "len.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_stats_cli_characters_and_png(tmp_path, capsys):
    assert run_cli("stats", SAMPLE, "--max-length", "300", "--png", tmp_path / "h.png") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unit"] == "characters" and out["rows"] == 6 and out["labels"]["by_name"] == 1
    assert (tmp_path / "h.png").stat().st_size > 1000
