"""Write a small multi-tool dataset (weather, unit conversion, calendar) in the OpenAI messages format.

Every row carries `tools` (the specs of examples/multitool/tools.py, as `--tools` offers them) and every
number or fact an assistant states comes from a tool result. Kinds: one call, two calls in a row
(calendar then weather), and a request answered without a tool.

    python examples/multitool/make_data.py --out data/multitool --n 300 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tools as T  # noqa: E402  (the example's own tools module, beside this file)

SYSTEM = "You are a helpful assistant. Use the tools for weather, unit conversions and the calendar."
CITIES = sorted({r["city"] for r in T._rows("weather.csv")})
DATES = [f"2025-06-0{d}" for d in range(1, 10)]
PAIRS = [("km", "mile"), ("mile", "km"), ("m", "foot"), ("kg", "lb"), ("lb", "kg"), ("g", "kg"), ("l", "gallon"),
         ("gallon", "l"), ("C", "F"), ("F", "C")]
NO_TOOL = [("Can you book me a flight to Paris?",
            "I can't book flights; I can check the weather, convert units and read your calendar."),
           ("Thanks, that's all.", "You're welcome!"), ("Hello!", "Hello! How can I help?")]


def specs() -> list[dict]:
    from tunelab.infer.tools import function_spec

    return [function_spec(fn) for fn in T.TOOLS]


def _call(messages: list, n: int, name: str, args: dict) -> object:
    result = getattr(T, name)(**args)
    cid = f"call_{n}"
    messages.append({"role": "assistant", "content": "", "tool_calls": [
        {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]})
    messages.append({"role": "tool", "tool_call_id": cid, "content": json.dumps(result)})
    return result


def _events_text(date: str, events: list[dict]) -> str:
    if not events:
        return f"You have nothing on {date}."
    return f"On {date} you have " + "; ".join(f"{e['title']} at {e['time']} ({e['place']})" for e in events) + "."


def one_dialog(rng: random.Random, i: int, tool_specs: list[dict]) -> dict:
    kind = rng.choices(["weather", "convert", "calendar", "two_calls", "no_tool"], weights=[3, 3, 3, 2, 1])[0]
    m: list[dict] = [{"role": "system", "content": SYSTEM}]
    if kind == "weather":
        city, day = rng.choice(CITIES), rng.choice(["today", "tomorrow"])
        m.append({"role": "user", "content": rng.choice(["What's the weather in {c} {d}?", "Weather for {c} {d}, please.",
                                                         "Will it rain in {c} {d}?"]).format(c=city, d=day)})
        w = _call(m, 1, "get_weather", {"city": city, "day": day})
        m.append({"role": "assistant", "content": f"{day.capitalize()} in {w['city']}: {w['condition']}, "
                                                  f"{w['low_c']} to {w['high_c']} C."})
    elif kind == "convert":
        src, dst = rng.choice(PAIRS)
        value = rng.choice([rng.randint(1, 200), round(rng.uniform(0.5, 50), 1)])
        m.append({"role": "user", "content": rng.choice(["How many {t} is {v} {s}?", "Convert {v} {s} to {t}.",
                                                         "{v} {s} in {t}?"]).format(v=value, s=src, t=dst)})
        r = _call(m, 1, "convert_units", {"value": value, "from_unit": src, "to_unit": dst})
        m.append({"role": "assistant", "content": f"{value} {src} is {r['value']} {r['unit']}."})
    elif kind == "calendar":
        date = rng.choice(DATES)
        m.append({"role": "user", "content": rng.choice(["What's on my calendar on {d}?", "Do I have anything on {d}?",
                                                         "My schedule for {d}?"]).format(d=date)})
        events = _call(m, 1, "list_events", {"date": date})
        m.append({"role": "assistant", "content": _events_text(date, events)})
    elif kind == "two_calls":
        date, city = rng.choice(DATES), rng.choice(CITIES)
        m.append({"role": "user", "content": f"What do I have on {date}, and what's the weather in {city} today?"})
        events = _call(m, 1, "list_events", {"date": date})
        w = _call(m, 2, "get_weather", {"city": city, "day": "today"})
        m.append({"role": "assistant", "content": _events_text(date, events) + f" {city} today: {w['condition']}, "
                                                  f"{w['low_c']} to {w['high_c']} C."})
    else:
        q, a = rng.choice(NO_TOOL)
        m += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"id": f"multitool-{i}", "kind": kind, "tools": tool_specs, "messages": m}


def generate(n: int, seed: int = 0) -> list[dict]:
    """`n` dialogs, deterministic in `seed`."""
    rng, tool_specs = random.Random(seed), specs()
    return [one_dialog(rng, i, tool_specs) for i in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="data/multitool", help="directory for train.jsonl and dev.jsonl")
    p.add_argument("--n", type=int, default=300, help="dialogs in all (a tenth go to dev.jsonl)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rows, out = generate(a.n, a.seed), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    n_dev = max(1, a.n // 10)
    for name, part in (("train", rows[n_dev:]), ("dev", rows[:n_dev])):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    print(f"{out}/train.jsonl: {len(rows) - n_dev} dialogs; {out}/dev.jsonl: {n_dev}")


if __name__ == "__main__":
    main()
