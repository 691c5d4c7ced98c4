"""The agent loop with a scripted stand-in model: good, malformed and invalid calls."""

from tunelab.data.schema import Turn
from tunelab.infer.agent import FALLBACK, Agent


def scripted(*outputs):
    seen = []

    def reply(turns):
        seen.append(list(turns))
        return outputs[len(seen) - 1]

    reply.seen = seen
    return reply


def fake_search(args):
    if "type" in args and args["type"] not in ("经济型", "舒适型"):
        return {"ok": False, "error": f"type {args['type']!r} is not valid"}
    return {"ok": True, "records": [{"name": "如家", "price": 298}]}


TOOLS = {"search_hotels": fake_search}


def test_good_call_runs_tool_and_feeds_records_back():
    model = scripted(Turn("tool_call", name="search_hotels", arguments={"type": "经济型"}),
                     Turn("assistant", content="推荐您去如家，每晚298元。"))
    seen_events = []
    res = Agent(model, TOOLS, on_event=seen_events.append).respond([], "找个经济型酒店")
    assert res.reply.content == "推荐您去如家，每晚298元。" and not res.fallback
    assert seen_events == res.events
    assert [t.role for t in res.turns] == ["user", "tool_call", "tool_result", "assistant"]
    assert res.turns[2].records == [{"name": "如家", "price": 298}]
    assert res.events[0].records and res.events[0].error is None
    assert model.seen[1][-1].role == "tool_result"  # the model saw the records


def test_malformed_call_is_told_once_then_model_recovers():
    model = scripted(Turn("tool_call", content="{broken", arguments=None),
                     Turn("tool_call", name="search_hotels", arguments={}),
                     Turn("assistant", content="好的"))
    res = Agent(model, TOOLS).respond([], "hi")
    assert res.reply.content == "好的" and not res.fallback
    assert "not valid JSON" in model.seen[1][-1].records["error"]


def test_invalid_twice_ends_with_polite_fallback():
    bad = Turn("tool_call", name="search_hotels", arguments={"type": "宫殿型"})
    res = Agent(scripted(bad, bad, bad), TOOLS).respond([], "找宫殿")
    assert res.fallback and res.reply.content == FALLBACK
    assert [e.error is not None for e in res.events] == [True, True]


def test_unknown_tool_and_empty_reply_and_tool_exception():
    def boom(args):
        raise RuntimeError("db gone")

    res = Agent(scripted(Turn("tool_call", name="book_room", arguments={}),
                         Turn("tool_call", name="search_hotels", arguments={})),
                {"search_hotels": boom}).respond([], "x")
    assert res.fallback and "unknown tool 'book_room'" in res.events[0].error
    assert "db gone" in res.events[1].error
    res = Agent(scripted(Turn("assistant", content="  ")), TOOLS).respond([], "x")
    assert res.fallback and res.reply.content == FALLBACK


def test_an_agent_for_a_domain_has_its_tools_and_its_fallback():
    from tunelab.domains import get_domain

    agent = Agent.for_domain(scripted(), "units", "")
    assert set(agent.tools) == {"convert_units"} and agent.fallback == get_domain("units").fallback_reply
    bad = Turn("tool_call", name="convert_units", arguments={"value": 1, "from_unit": "kg", "to_unit": "km"})
    res = Agent.for_domain(scripted(bad, bad), "units", "").respond([], "1 kg in km")
    assert res.fallback and res.reply.content == get_domain("units").fallback_reply
    assert "cannot convert mass (kg) to length (km)" in res.events[0].error
    assert Agent.for_domain(scripted(), "", "").tools == {}


def test_too_many_calls_stop():
    call = Turn("tool_call", name="search_hotels", arguments={})
    res = Agent(scripted(*[call] * 10), TOOLS, max_calls=2).respond([], "x")
    assert res.fallback and len(res.events) == 3
