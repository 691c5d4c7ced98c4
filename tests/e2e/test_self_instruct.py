"""`tunelab data self-instruct` end to end on a tiny random model: generation, filtering, the files, resume."""

from __future__ import annotations

import json

from tests.conftest import write_jsonl
from tunelab.cli.main import main
from tunelab.data.prep.self_instruct_prompts import parse_instructions
from tunelab.infer.generator import open_generator


def test_cli_runs_on_a_tiny_model_and_resumes(tiny_llama, tmp_path, capsys):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": "写一首关于秋天的诗。", "output": "秋风起"},
                                                    {"instruction": "把这段话翻译成英文。", "output": "Hello"}])
    out = tmp_path / "si.jsonl"
    args = ["data", "self-instruct", "--model", str(tiny_llama), "--seeds", str(seeds), "--out", str(out),
            "--n", "3", "--max-rounds", "2", "--prompts-per-round", "2", "--max-new-tokens", "12"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    rejected = [json.loads(x) for x in (tmp_path / "si.jsonl.rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    kept = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
    assert rejected and all(r["reason"] and r["round"] in (0, 1) for r in rejected)  # random text: all rejected
    assert f"kept {len(kept)} (of --n 3) in 2 rounds" in printed
    for reason in {r["reason"] for r in rejected}:  # one stats line per reason, with the file's count
        assert f"rejected {reason}: {sum(r['reason'] == reason for r in rejected)}" in printed
    assert main(args) == 0  # resumed: the rounds go on where they stopped
    again = [json.loads(x) for x in (tmp_path / "si.jsonl.rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["round"] for r in again[len(rejected):]} <= {2, 3} and len(again) > len(rejected)


def test_generator_stops_at_stop_strings_and_says_when_cut(tiny_llama):
    gen = open_generator(str(tiny_llama), "raw", temperature=1.0, top_p=1.0, batch_size=2)
    assert gen.style == "raw"
    gen.reseed(0)
    out = gen.complete(["Task 1: sort\nTask 2:", "abc"], max_new_tokens=40, stop=["a"])
    for text, ended in out:
        assert "a" not in text and (ended or len(gen.engine.tokenizer(text)["input_ids"]) >= 30)
    cut = gen.complete(["Task 1: sort\nTask 2:"], max_new_tokens=3, stop=["\x00never"], greedy=True)
    assert cut[0][1] is False and parse_instructions(cut[0][0], "en", complete=False) == []
