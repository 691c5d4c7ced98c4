"""Bad input is one line naming what is wrong, never a traceback: files that are not UTF-8, JSON nested
past Python's stack, corrupt safetensors, numbers and text SQLite cannot hold, an output dir that
cannot be written."""

from __future__ import annotations

import json
import shutil

import pytest

from tunelab.cli.main import main
from tunelab.data.readers import read_conversations
from tunelab.utils.errors import ConfigError, DataError, ModelError

ROW = {"prompt": "hello \xff", "completion": "ok"}


@pytest.mark.parametrize("suffix,text", [
    (".jsonl", json.dumps(ROW, ensure_ascii=False) + "\n"),
    (".json", json.dumps([ROW], ensure_ascii=False)),
    (".csv", "prompt,completion\nhello \xff,ok\n"),
], ids=["jsonl", "json", "csv"])
def test_file_that_is_not_utf8_names_its_line(tmp_path, suffix, text):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(text.encode("latin-1"))  # \xff alone is not UTF-8
    line = 2 if suffix == ".csv" else 1
    with pytest.raises(DataError, match=rf"data{suffix}:{line}: not UTF-8"):
        read_conversations(path)


@pytest.mark.parametrize("suffix,text", [
    (".jsonl", '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + ', "completion": "x"}\n'),
    (".json", "[" * 100_000 + "]" * 100_000),
    (".jsonl", json.dumps({"context": "[" * 100_000 + "]" * 100_000, "response": "{}"}) + "\n"),  # inside a string
], ids=["jsonl", "json", "json-in-a-string"])
def test_deeply_nested_json_is_a_data_error(tmp_path, suffix, text):
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(DataError, match="nested"):
        read_conversations(path)


def test_corrupt_safetensors_in_a_model_dir_is_one_model_error(tiny_llama, tmp_path, capsys):
    from tunelab.config.schema import ModelConfig
    from tunelab.models import load_model

    model = shutil.copytree(tiny_llama, tmp_path / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(ModelError, match="model.safetensors: not a valid safetensors file"):
        load_model(ModelConfig(name_or_path=str(model)))
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ModelError, match="model.safetensors: not a valid safetensors file"):
        load_model(ModelConfig(name_or_path=str(model)))


def test_search_hotels_answers_errors_for_numbers_and_text_sqlite_cannot_hold(tmp_path):
    from tunelab.domains.hotel import build_db, connect, search_hotels

    build_db(tmp_path / "h.db", n=5)
    conn = connect(tmp_path / "h.db")
    for args in [{"price_range_lower": 10 ** 30}, {"price_range_upper": 10 ** 400}, {"name": "\ud800"},
                 {"facilities": ["\udcff"]}, {"\ud800": 1}]:
        result = search_hotels(conn, args)  # its contract: never raises for bad arguments
        assert result["ok"] is False and result["error"], args
        json.dumps(result, ensure_ascii=False).encode("utf-8")  # the error itself is sendable text


def test_crosswoz_import_drops_values_sqlite_cannot_hold(tmp_path):
    from tunelab.domains.hotel.db import import_crosswoz

    rows = [["A", {"名称": "A", "价格": "1e400", "评分": 4.5}], ["B", {"名称": "B", "价格": 10 ** 30}],
            ["C\ud800", {"评分": 4.0}], ["D", {"评分": float("inf"), "地址": "x\udcff", "酒店设施": ["\ud801", "wifi"]}]]
    (tmp_path / "hotel_db.json").write_text(json.dumps(rows))
    report = import_crosswoz(tmp_path / "hotel_db.json", tmp_path / "h.db")
    assert report["hotels"] == 3 and report["counts"]["bad_price"] == 2 and report["counts"]["bad_rating"] == 1
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="deep.json"):
        import_crosswoz(tmp_path / "deep.json", tmp_path / "h2.db")


def test_evaluate_into_an_unwritable_out_fails_first_in_one_line(tmp_path, capsys):
    from tests.conftest import SAMPLE
    from tunelab.evaluate.job import evaluate

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    # checked before the run is even read (this one does not exist): no generation is wasted
    with pytest.raises(ConfigError, match="--out .*a_file"):
        evaluate(tmp_path / "no_run", SAMPLE, out_dir=blocker / "eval")
    rc = main(["evaluate", str(tmp_path / "no_run"), "--data", str(SAMPLE), "--out", str(blocker / "eval")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("tunelab: error: --out") and len(err.splitlines()) == 1
