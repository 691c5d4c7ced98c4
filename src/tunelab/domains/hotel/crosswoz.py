"""Convert CrossWOZ dialogs with hotel-only goals into the hotel dialog format.

`import_dialogs(path, db_path=None)` keeps dialogs whose every goal row is in the 酒店 domain.
User and system texts are copied verbatim. After a user turn that states hotel constraints
(dialog_act `["Inform", "酒店", slot, value]`), it inserts a search turn with the accumulated
constraints mapped to `search_hotels` arguments and a return turn (records from the database when
db_path is given, else []). A newly named hotel is searched by its name alone, because a name
identifies the hotel and earlier constraints could wrongly filter it out.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from tunelab.domains.hotel.db import connect
from tunelab.domains.hotel.tool import HOTEL_TYPES, VALID_KEYS, search_hotels
from tunelab.utils.errors import DataError

DOMAIN = "酒店"
NUM = r"(\d+(?:\.\d+)?)"
MAX_EXAMPLES = 5


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


class _State:
    """Accumulated hotel constraints of one dialog, as search_hotels arguments."""

    def __init__(self) -> None:
        self.args: dict[str, Any] = {}
        self.last_searched: dict | None = None
        self.last_name: str | None = None

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


def _example(report: dict, key: str, example: str) -> None:
    report["counts"][key] += 1
    examples = report["examples"].setdefault(key, [])
    if len(examples) < MAX_EXAMPLES:
        examples.append(example)


def _is_hotel_only(dialog: dict) -> bool:
    goal = dialog.get("goal")
    return bool(goal) and all(isinstance(row, list) and len(row) > 1 and row[1] == DOMAIN for row in goal)


def _convert(dialog: dict, conn, report: dict) -> list[dict]:
    turns: list[dict] = []
    state, records = _State(), []
    for msg in dialog["messages"]:
        if msg.get("role") == "sys":
            turns.append({"role": "assistant", "content": msg.get("content", "")})
            report["counts"]["assistant_turns"] += 1
            if conn is not None:  # how often the original system offers a hotel our records lack
                names = {a[3] for a in msg.get("dialog_act") or [] if len(a) == 4 and a[1] == DOMAIN
                         and a[0] in ("Inform", "Recommend") and a[2] == "名称"}
                report["counts"]["sys_hotel_not_in_records"] += len(names - {r["name"] for r in records})
            continue
        turns.append({"role": "user", "content": msg.get("content", "")})
        report["counts"]["user_turns"] += 1
        named = None
        for act in msg.get("dialog_act") or []:
            if len(act) == 4 and act[0] == "Inform" and act[1] == DOMAIN:
                named = state.inform(act[2], act[3], report) or named
        args = None
        if named and named != state.last_name:
            if conn is not None and named in [r["name"] for r in records]:
                report["counts"]["name_already_in_records"] += 1  # answered from the last records
            else:
                args = {"name": named}
            state.last_name = named
        elif state.constraints() and state.constraints() != state.last_searched:
            args = state.constraints()
            state.last_searched, state.last_name = args, None
        if args is not None:
            records = search_hotels(conn, args)["records"] if conn is not None else []
            turns.append({"role": "search", "arguments": args})
            turns.append({"role": "return", "records": records})
            report["counts"]["search_turns"] += 1
            report["counts"]["empty_returns"] += conn is not None and not records
    return turns


def import_dialogs(path: str | Path, db_path: str | Path | None = None) -> tuple[list[dict], dict]:
    """Read CrossWOZ dialogs (.json or .json.zip) and convert the hotel-only ones.

    Returns (dialogs, report): dialogs are {"id": "crosswoz-<id>", "kind": "crosswoz", "dialog": [...]}
    in file order; report has dialogs_read, kept, skipped_non_hotel, skipped_malformed and counts
    (user_turns, assistant_turns, search_turns, empty_returns, unparsed_values, ...) with examples.
    Raises DataError naming the file when it cannot be read or is not a dialog mapping.
    """
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object mapping dialog ids to dialogs, got {type(data).__name__}")
    report: dict[str, Any] = {"dialogs_read": len(data), "kept": 0, "skipped_non_hotel": 0,
                              "skipped_malformed": 0, "counts": Counter(), "examples": {}}
    conn = connect(db_path) if db_path is not None else None
    dialogs = []
    try:
        for dialog_id, dialog in data.items():
            if not (isinstance(dialog, dict) and isinstance(dialog.get("messages"), list)
                    and all(isinstance(m, dict) for m in dialog["messages"])):
                report["skipped_malformed"] += 1
                continue
            if not _is_hotel_only(dialog):
                report["skipped_non_hotel"] += 1
                continue
            turns = _convert(dialog, conn, report)
            dialogs.append({"id": f"crosswoz-{dialog_id}", "kind": "crosswoz", "dialog": turns})
    finally:
        if conn is not None:
            conn.close()
    report["kept"] = len(dialogs)
    report["counts"] = dict(sorted(report["counts"].items()))
    return dialogs, report
