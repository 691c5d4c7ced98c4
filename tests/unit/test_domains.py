"""Every registered domain, one row each: its generated dialogs read as valid conversations whose tool calls
its own tools answer with the very records the dialogs show; its calls render and parse back for evaluation;
and the units domain's conversions are right."""

import json

import pytest

from tunelab.data.readers import read_conversations
from tunelab.domains import DOMAINS, domain_tools, get_domain
from tunelab.evaluate.parse import parse_rendered


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    from tunelab.domains.hotel import build_db

    db = tmp_path_factory.mktemp("hotel") / "hotels.db"
    build_db(db, n=60)
    return {"hotel": str(db), "units": ""}


def test_every_domain_has_a_row_here(resources):
    assert set(resources) == set(DOMAINS)


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_generated_dialogs_are_grounded_in_the_tools(name, resources, tmp_path):
    domain = get_domain(name)
    rows = domain.generate(40, 3, resources[name])
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    convs, skipped = read_conversations(str(path))
    assert skipped == 0 and len(convs) == 40
    tools = domain_tools(name, resources[name])
    assert set(tools) == {spec["function"]["name"] for spec in domain.tool_specs}
    calls = 0
    for conv in convs:
        for call, result in zip(conv.turns, conv.turns[1:]):
            if call.role != "tool_call":
                continue
            calls += 1
            out = tools[call.name](call.arguments)
            assert out["ok"], (call.arguments, out)
            assert result.role == "tool_result" and json.loads(json.dumps(out["records"])) == result.records
    assert calls > 0
    assert domain.generate(40, 3, resources[name]) == rows  # deterministic in the seed


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_calls_render_and_parse_back(name):
    domain = get_domain(name)
    for spec in domain.tool_specs:
        tool = spec["function"]["name"]
        text = domain.render_call(tool, {"x": [1, "二"]})
        prefix, args = parse_rendered(text)
        assert args == {"x": [1, "二"]} and domain.tool_for(prefix) == tool
    assert domain.tool_for("no_such_tool") is None


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_a_domain_answers_bad_calls_without_raising(name, resources):
    for tool in domain_tools(name, resources[name]).values():
        for bad in (None, [], {"nonsense": 1}, {"value": float("inf")}, {"value": 10**40}):
            out = tool(bad)
            assert out["ok"] is False and out["error"]


@pytest.mark.parametrize("value, src, dst, expected", [
    (1, "mile", "km", 1.6093), (100, "C", "F", 212.0), (0, "C", "K", 273.15), (32, "F", "C", 0.0),
    (1, "lb", "g", 453.5924), (2, "week", "h", 336.0), (1, "gallon", "l", 3.7854),
])
def test_units_converts(value, src, dst, expected):
    out = domain_tools("units", "")["convert_units"]({"value": value, "from_unit": src, "to_unit": dst})
    assert out["ok"] and out["records"][0]["value"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("args, error", [
    ({"value": 1, "from_unit": "kg", "to_unit": "km"}, "cannot convert mass (kg) to length (km)"),
    ({"value": -500, "from_unit": "C", "to_unit": "K"}, "below absolute zero"),
    ({"value": 1, "from_unit": "parsec", "to_unit": "km"}, "'parsec' is not a known unit"),
    ({"value": True, "from_unit": "m", "to_unit": "km"}, "value must be a finite number"),
])
def test_units_refuses_with_a_reason(args, error):
    out = domain_tools("units", "")["convert_units"](args)
    assert not out["ok"] and error in out["error"]


def test_units_extra_metric_compares_the_amount_said():
    items = [{"label": "assistant: 5 miles is 8.05 km.", "predict": "assistant: It comes to 8.05 km."},
             {"label": "assistant: 2 m is 200 cm.", "predict": "assistant: 2 m is 20 cm."},
             {"label": "assistant: You're welcome!", "predict": "assistant: 3"},  # no amount: not counted
             {"label": 'convert_units:\n{"value": 2}', "predict": "assistant: no"}]
    assert get_domain("units").extra_metrics(items) == {"answer_value_match": 50.0}


def test_a_run_without_a_domain_renders_a_domain_tool_the_domain_way():
    from tunelab.data.schema import Turn
    from tunelab.evaluate.job import render

    call = Turn("tool_call", name="search_hotels", arguments={"type": "经济型"})
    assert render(call) == render(call, "hotel") == 'search:\n{"type": "经济型"}'
    assert render(Turn("tool_call", name="lookup", arguments={})) == "lookup:\n{}"
