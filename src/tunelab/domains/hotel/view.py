"""The hotel records as the model reads them under `data.record_view: relevant`.

A search result's facilities are a third of a hotel dialog's training tokens (55.9 tokens per record,
32.5% of all; `benchmarks/results/token_shares.md`), and a reply reads them only to answer about a
facility. So this view keeps, of each record's facilities, the ones the dialog names: the search's
`facilities` argument, and any facility a guest's message speaks of (by its name or by the words guests
use for it, FACILITY_CUES). A record then lists exactly the named facilities it has: an empty list says
it has none of them. When nothing is named at all the field is left out of every record.

The view is a function of the rendered turns, so training (a whole dialog) and inference (the dialog so
far) show a record the same way once the dialog has reached the same point; a facility named later in a
training dialog is already shown in its earlier records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Canonical DB facility -> substrings of a guest's message that speak of it (the name itself always counts).
# Kept short and specific: "wifi" names every wifi kind, "停车" both parking kinds, "早餐"/"早饭" both breakfasts.
_WIFI = ("wifi", "无线", "上网")
FACILITY_CUES: dict[str, tuple[str, ...]] = {
    "24小时热水": ("热水",),
    "吹风机": ("吹风", "吹头发"),
    "暖气": ("暖气", "供暖"),
    "宽带上网": ("宽带", "网线", "上网"),
    "酒店各处提供wifi": _WIFI,
    "公共区域和部分房间提供wifi": _WIFI,
    "所有房间提供wifi": _WIFI,
    "部分房间提供wifi": _WIFI,
    "公共区域提供wifi": _WIFI,
    "国际长途电话": ("国际长途", "长途电话"),
    "免费市内电话": ("市内电话", "市话"),
    "免费国内长途电话": ("国内长途", "长途电话"),
    "中式餐厅": ("中餐", "中式"),
    "西式餐厅": ("西餐", "西式"),
    "会议室": ("会议", "开会"),
    "健身房": ("健身",),
    "室内游泳池": ("泳",),
    "室外游泳池": ("泳",),
    "无烟房": ("无烟", "吸烟", "抽烟"),
    "商务中心": ("商务中心", "打印"),
    "接站服务": ("接站", "火车站接"),
    "接机服务": ("接机", "机场接"),
    "接待外宾": ("外宾", "外国"),
    "洗衣服务": ("洗衣",),
    "行李寄存": ("行李", "寄存"),
    "叫醒服务": ("叫醒", "叫早"),
    "残疾人设施": ("残疾", "无障碍", "轮椅"),
    "棋牌室": ("棋牌", "打牌", "麻将"),
    "酒吧": ("酒吧", "喝一杯"),
    "早餐服务": ("早餐", "早饭", "早点"),
    "早餐服务免费": ("早餐", "早饭", "早点"),
    "收费停车位": ("停车", "车位"),
    "免费停车位": ("停车", "车位"),
    "租车": ("租车",),
    "SPA": ("spa", "水疗"),
    "桑拿": ("桑拿",),
    "温泉": ("温泉",),
    "看护小孩服务": ("小孩", "孩子", "儿童"),
    "开放式厨房": ("厨房", "做饭"),
}


def named_facilities(arguments: dict | None, user_text: str, cues: dict = FACILITY_CUES) -> set[str]:
    """The facilities a search's arguments name, plus those a guest's words speak of."""
    named = set()
    if isinstance(arguments, dict) and isinstance(arguments.get("facilities"), list):
        named |= {f for f in arguments["facilities"] if isinstance(f, str)}
    text = user_text.lower()
    named |= {f for f, said in cues.items() if f.lower() in text or any(c in text for c in said)}
    return named


@dataclass(frozen=True)
class RelevantFacilities:
    """The hotel domain's record view. Its repr holds the cues, so the tokenization cache, which keys on it,
    renders again when they change."""
    cues: dict = field(default_factory=lambda: dict(FACILITY_CUES))

    def __call__(self, records, arguments: dict | None, user_text: str):
        """`records` with each record's facilities cut to the named ones (the field dropped when none is named).
        Anything that is not a list of records with a facilities list comes back as it was."""
        if not (isinstance(records, list) and any(isinstance(r, dict) and isinstance(r.get("facilities"), list)
                                                  for r in records)):
            return records
        named = named_facilities(arguments, user_text, self.cues)
        return [{k: [f for f in v if f in named] if k == "facilities" else v
                 for k, v in r.items() if k != "facilities" or named}
                if isinstance(r, dict) and isinstance(r.get("facilities"), list) else r for r in records]
