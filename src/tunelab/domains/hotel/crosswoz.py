"""Convert the hotel part of CrossWOZ dialogs into the hotel dialog format (user / search / return / assistant).

`import_dialogs(path, db_path=None)` reads every dialog and keeps its hotel turns; texts are copied verbatim.
Rules, per user turn (each kept or dropped together with the system reply that follows it):
- a turn whose acts are all about 酒店 (General greet/thank acts aside) is a hotel turn and is kept, unless a
  rule below drops it; a turn about other domains only is dropped (`other_domain`); a turn that mixes hotel acts
  with another domain's is dropped (`mixed_domain`: its text talks about the other place);
- a General-only turn (thank, bye) is kept as a closing exchange only when it directly follows a kept turn
  (else `general_elsewhere`);
- a hotel sub-goal that depends on another place (a Select act, or a 名称 goal like "出现在id=1的周边酒店里")
  cannot be served by search_hotels: all its turns are dropped (`near_place`); so is a turn that asks for what
  the tool's records lack, 周边景点 / 周边餐馆 / 周边酒店 (`unservable_request`);
- a hotel turn with no search of its own whose sub-goal has no kept search since its last dropped search turn
  (a dropped turn that informed constraints or asked for a hotel) is dropped (`no_search_before`): its reply
  would talk about a hotel the kept context never found.
Searches follow the annotation: the sub-goal of a turn is the one whose user_state rows
([goal_id, domain, slot, value, informed]) turn informed in it; a search carries the constraints informed so far
in the kept turns of the CURRENT hotel sub-goal only (a new sub-goal starts from empty). 酒店类型 -> type;
酒店设施-X 是/否 -> adds/removes X in facilities; 价格 "300-400元" / "1000元以上" -> price_range_lower/upper
(ints); 评分 "4.5分以上" -> rating_range_lower 4.5 (floats), see parse_range; 名称 -> a search by {"name": ...}
alone (a name identifies the hotel; earlier constraints could wrongly filter it out), unless that hotel is in
the sub-goal's last records. A search is inserted after a turn whose informs change the arguments.
Records (return turns) come from the database at db_path ([] without one): the hotels that the system's reply
names (its Inform/Recommend 名称 acts), in that order, when the search matches them, then the search's own best
results up to the tool's limit, without duplicates; so every record is one the tool returns for those
arguments, and the reply is grounded whenever the hotel it names matches the search. A named hotel the search
does not match is counted (`named_not_in_search`), never added. A dialog is kept when it keeps at least one
search; the others are counted by reason (`no_hotel_goal`, `no_hotel_search`, `malformed`).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from tunelab.domains.hotel.db import connect
from tunelab.domains.hotel.tool import DEFAULT_LIMIT, HOTEL_TYPES, VALID_KEYS, search_hotels
from tunelab.utils.errors import DataError

DOMAIN = "酒店"
NUM = r"(\d+(?:\.\d+)?)"
MAX_EXAMPLES = 5
UNSERVABLE = ("周边景点", "周边餐馆", "周边酒店")  # slots of the CrossWOZ DB that search_hotels' records lack
TURN_REASONS = ("other_domain", "mixed_domain", "near_place", "unservable_request", "no_search_before",
                "general_elsewhere", "no_reply")


def _read(path: Path) -> Any:
    """Load the dialogs JSON from a .json file or a .zip holding exactly one .json member."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    source = str(path)
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.namelist() if m.endswith(".json")]
                if len(members) != 1:
                    raise DataError(f"{path}: expected exactly one .json inside the zip, found {members}")
                source = f"{path}!{members[0]}"
                text = zf.read(members[0]).decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{source}:{e.lineno}: invalid JSON at column {e.colno}: {e.msg}") from None


def _number(text: str, integer: bool) -> int | float:
    value = float(text)
    return int(value) if integer and value.is_integer() else value


def parse_range(value: str, unit: str, integer: bool) -> tuple[int | float | None, int | float | None] | None:
    """'300-500元' -> (300, 500); '<500'/'500元以下' -> (None, 500); '>4.5'/'4.5分以上' -> (4.5, None);
    '4.5分' -> (4.5, 4.5). Bounds are inclusive. None when the value is not a range."""
    v = value.strip().replace("＜", "<").replace("＞", ">").replace("～", "-").replace("~", "-").replace("到", "-")
    u = f"(?:{unit})?"
    patterns = (
        (rf"^{NUM}{u}\s*-\s*{NUM}{u}$", lambda a, b: (a, b)),
        (rf"^(?:<=?|不超过){NUM}{u}$", lambda a: (None, a)),
        (rf"^{NUM}{u}(?:以下|以内)$", lambda a: (None, a)),
        (rf"^(?:>=?|不低于){NUM}{u}$", lambda a: (a, None)),
        (rf"^{NUM}{u}以上$", lambda a: (a, None)),
        (rf"^{NUM}{u}$", lambda a: (a, a)),
    )
    for pattern, build in patterns:
        m = re.match(pattern, v)
        if m:
            lo, hi = build(*(_number(g, integer) for g in m.groups()))
            if lo is not None and hi is not None and lo > hi:
                return None
            return lo, hi
    return None


class _SubGoal:
    """One hotel sub-goal's constraints (as search_hotels arguments) and what its kept turns last searched."""

    def __init__(self) -> None:
        self.args: dict[str, Any] = {}
        self.last_searched: dict | None = None
        self.last_name: str | None = None
        self.records: list[dict] | None = None  # None: no kept search since the sub-goal began or lost its hotel

    def inform(self, slot: str, value: Any, report: dict) -> str | None:
        """Apply one user Inform; returns a hotel name when the act names one."""
        value = value.strip() if isinstance(value, str) else value
        if slot == "名称":
            return value or None
        if slot == "酒店类型" and value in HOTEL_TYPES:
            self.args["type"] = value
        elif slot.startswith("酒店设施-") and value in ("是", "否"):
            facility = slot.split("-", 1)[1].strip()
            facilities = [f for f in self.args.get("facilities", []) if f != facility]
            if value == "是":
                facilities.append(facility)
            self.args["facilities"] = facilities
            if not facilities:
                del self.args["facilities"]
        elif slot in ("价格", "评分") and isinstance(value, str) and value:
            key = "price" if slot == "价格" else "rating"
            bounds = parse_range(value, "元" if key == "price" else "分", integer=key == "price")
            if bounds is None:
                _example(report, "unparsed_values", f"{slot}={value!r}")
                return None
            for side, bound in zip(("lower", "upper"), bounds):
                self.args.pop(f"{key}_range_{side}", None)  # a new statement replaces the old range
                if bound is not None:
                    self.args[f"{key}_range_{side}"] = bound
        elif slot in ("酒店类型",) or slot.startswith("酒店设施-") or slot in ("价格", "评分"):
            _example(report, "unparsed_values", f"{slot}={value!r}")
        return None

    def constraints(self) -> dict:
        return {k: self.args[k] for k in VALID_KEYS if k in self.args}

    def next_search(self, named: str | None, stated: bool, report: dict) -> dict | None:
        """The arguments of the search this turn calls for, or None when the last records still answer it.
        Only a turn that states a constraint (`stated`) searches by constraints: a turn that just asks about
        the hotel never does, even when the annotation's constraints changed in a turn that was dropped."""
        if named and named != self.last_name:
            self.last_name = named
            if self.records and named in [r["name"] for r in self.records]:
                report["counts"]["name_already_in_records"] += 1
                self.last_searched = self.constraints()  # what the turn stated is checked on the named hotel
                return None
            return {"name": named}
        if stated and self.constraints() and (self.constraints() != self.last_searched or self.records is None):
            self.last_searched, self.last_name = self.constraints(), None
            return self.constraints()
        return None


def _example(report: dict, key: str, example: str) -> None:
    report["counts"][key] += 1
    examples = report["examples"].setdefault(key, [])
    if len(examples) < MAX_EXAMPLES:
        examples.append(example)


def _acts(msg: dict) -> list[list]:
    return [a for a in msg.get("dialog_act") or [] if isinstance(a, list) and len(a) == 4]


def _named_hotels(reply: dict | None) -> list[str]:
    """Hotels the system's reply names, in order, once each."""
    names = [a[3].strip() for a in _acts(reply or {}) if a[0] in ("Inform", "Recommend") and a[1] == DOMAIN
             and a[2] == "名称" and isinstance(a[3], str) and a[3].strip()]
    return list(dict.fromkeys(names))


def _records(conn, args: dict, named: list[str], report: dict) -> list[dict]:
    """The hotels the reply names (those the search matches) first, then the search's best, up to the limit."""
    first = []
    for name in named:
        # the named hotel filtered by the same arguments: a match proves the tool returns it for them
        hits = search_hotels(conn, {**args, "name": name}, limit=50)["records"]
        match = [r for r in hits if r["name"] == name]
        if match:
            first.append(match[0])
        else:
            _example(report, "named_not_in_search", f"{name} for {json.dumps(args, ensure_ascii=False)}")
    rest = search_hotels(conn, args, limit=DEFAULT_LIMIT + len(first))["records"]
    rest = [r for r in rest if r["name"] not in {f["name"] for f in first}]
    return first + rest[:max(0, DEFAULT_LIMIT - len(first))]


def _turn_goal(msg: dict, prev_state: list, current: int | None, hotel_goals: set) -> int:
    """The hotel sub-goal of a turn: the one whose user_state rows turned informed in it, else the current."""
    state = msg.get("user_state") or []
    newly = {row[0] for i, row in enumerate(state)
             if isinstance(row, list) and len(row) == 5 and row[1] == DOMAIN and row[4] is True
             and not (i < len(prev_state) and isinstance(prev_state[i], list) and len(prev_state[i]) == 5
                      and prev_state[i][4] is True)}
    newly &= hotel_goals
    if newly:
        return max(newly)
    return current if current is not None else min(hotel_goals)


def _drop_reason(acts: list[list], goal_id: int, near: set, prev_kept: bool) -> str | None:
    """Why a user turn cannot be kept, or None."""
    hotel = [a for a in acts if a[1] == DOMAIN]
    other = [a for a in acts if a[0] != "General" and a[1] != DOMAIN]
    if not hotel and not other:
        return None if prev_kept else "general_elsewhere"
    if not hotel:
        return "other_domain"
    if goal_id in near or any(a[0] == "Select" for a in hotel) or any(
            a[0] == "Inform" and a[2] == "名称" and str(a[3]).startswith("出现在") for a in hotel):
        near.add(goal_id)  # the whole sub-goal depends on a place: later turns of it go too
        return "near_place"
    if other:
        return "mixed_domain"
    if any(a[0] == "Request" and a[2] in UNSERVABLE for a in hotel):
        return "unservable_request"
    return None


def _convert(dialog_id: str, dialog: dict, conn, report: dict) -> list[dict]:
    goal_rows = [r for r in dialog.get("goal") or [] if isinstance(r, list) and len(r) >= 4 and r[1] == DOMAIN]
    hotel_goals = {r[0] for r in goal_rows}
    near = {r[0] for r in goal_rows if r[2] == "名称" and str(r[3]).startswith("出现在")}
    msgs, turns, goals = dialog["messages"], [], {}
    prev_state, current, prev_kept = [], None, False
    for i, msg in enumerate(msgs):
        if msg.get("role") != "usr":
            continue
        report["counts"]["user_turns_read"] += 1
        reply = msgs[i + 1] if i + 1 < len(msgs) and msgs[i + 1].get("role") == "sys" else None
        acts = _acts(msg)
        hotel_acts = [a for a in acts if a[1] == DOMAIN]
        goal_id = _turn_goal(msg, prev_state, current, hotel_goals) if hotel_acts else current
        current = goal_id  # a dropped turn moves the talk to its sub-goal too: follow-ups without acts go there
        prev_state = msg.get("user_state") or prev_state
        reason = "no_reply" if reply is None else _drop_reason(acts, goal_id, near, prev_kept)
        sub = goals.setdefault(goal_id, _SubGoal()) if hotel_acts else None
        args = None
        if reason is None and sub is not None:
            named = None
            for act in hotel_acts:
                if act[0] == "Inform":
                    named = sub.inform(act[2], act[3], report) or named
            stated = any(a[0] == "Inform" and a[2] != "名称" for a in hotel_acts)
            args = sub.next_search(named, stated, report)
            if args is None and sub.records is None:
                reason = "no_search_before"
        if reason is not None:
            _example(report, f"dropped_{reason}", f"{dialog_id}: {str(msg.get('content', ''))[:60]}")
            # a dropped turn that changed or asked for the hotel leaves its sub-goal without one
            if sub is not None and any(a[0] == "Inform" or (a[0] == "Request" and a[2] == "名称") for a in hotel_acts):
                sub.records = None
            prev_kept = False
            continue
        turns.append({"role": "user", "content": msg.get("content", "")})
        if args is not None:
            records = _records(conn, args, _named_hotels(reply), report) if conn is not None else []
            sub.records = records
            turns += [{"role": "search", "arguments": args}, {"role": "return", "records": records}]
            report["counts"]["search_turns"] += 1
            report["counts"]["empty_returns"] += conn is not None and not records
        elif sub is not None and conn is not None:  # a follow-up answered from the records already shown
            missing = set(_named_hotels(reply)) - {r["name"] for r in sub.records or []}
            report["counts"]["reply_names_hotel_not_in_records"] += len(missing)
        turns.append({"role": "assistant", "content": reply.get("content", "")})
        report["counts"]["user_turns"] += 1
        report["counts"]["assistant_turns"] += 1
        prev_kept = True
    return turns


def _well_formed(dialog: Any) -> bool:
    return (isinstance(dialog, dict) and isinstance(dialog.get("messages"), list)
            and all(isinstance(m, dict) for m in dialog["messages"]))


def import_dialogs(path: str | Path, db_path: str | Path | None = None) -> tuple[list[dict], dict]:
    """Read CrossWOZ dialogs (.json or .json.zip) and convert the hotel part of each (rules: module docstring).

    Returns (dialogs, report): dialogs are {"id": "crosswoz-<id>", "kind": "crosswoz", "dialog": [...]} in file
    order; report has dialogs_read, kept, dropped_dialogs {reason: n}, dropped_turns {reason: n} (user turns of
    dialogs with a hotel goal, each dropped with its reply), counts (user_turns_read, user_turns,
    assistant_turns, search_turns, empty_returns, named_not_in_search, unparsed_values, ...) and up to 5
    examples per reason. user_turns_read == user_turns + sum(dropped_turns) and dialogs_read == kept +
    sum(dropped_dialogs). Raises DataError naming the file when it cannot be read or is not a dialog mapping.
    """
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object mapping dialog ids to dialogs, got {type(data).__name__}")
    report: dict[str, Any] = {"dialogs_read": len(data), "kept": 0, "counts": Counter(), "examples": {}}
    dropped = Counter()
    conn = connect(db_path) if db_path is not None else None
    dialogs = []
    try:
        for dialog_id, dialog in data.items():
            if not _well_formed(dialog):
                dropped["malformed"] += 1
            elif not any(isinstance(r, list) and len(r) > 1 and r[1] == DOMAIN for r in dialog.get("goal") or []):
                dropped["no_hotel_goal"] += 1
            else:
                turns = _convert(str(dialog_id), dialog, conn, report)
                if any(t["role"] == "search" for t in turns):
                    dialogs.append({"id": f"crosswoz-{dialog_id}", "kind": "crosswoz", "dialog": turns})
                else:  # no kept search means no kept turn at all (a hotel turn needs one before it)
                    _example(report, "dialog_no_hotel_search", str(dialog_id))
                    dropped["no_hotel_search"] += 1
    finally:
        if conn is not None:
            conn.close()
    counts = report["counts"]
    report["kept"] = len(dialogs)
    report["dropped_dialogs"] = dict(sorted(dropped.items()))
    report["dropped_turns"] = {r: counts.pop(f"dropped_{r}") for r in TURN_REASONS if counts.get(f"dropped_{r}")}
    counts.pop("dialog_no_hotel_search", None)
    report["counts"] = dict(sorted(counts.items()))
    report["examples"] = {k.removeprefix("dropped_"): v for k, v in sorted(report["examples"].items())}
    return dialogs, report
