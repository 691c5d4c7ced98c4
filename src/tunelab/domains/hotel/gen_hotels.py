"""Deterministic generator of realistic Beijing hotel rows (pure data, no I/O).

`generate_hotels(seed, n)` promises: the same (seed, n) always yields the same list of rows;
names are unique; prices agree with the hotel type; ratings are one-decimal values in 3.0-5.0.
"""

from __future__ import annotations

import random

from tunelab.domains.hotel.tool import HOTEL_TYPES
from tunelab.utils.errors import DataError

# (landmark, district, streets, subway station, has lettered exits)
AREAS = [
    ("王府井", "东城区", ("王府井大街", "金鱼胡同", "东安门大街"), "王府井", True),
    ("东单", "东城区", ("东单北大街", "东长安街"), "东单", True),
    ("崇文门", "东城区", ("崇文门外大街", "崇文门西大街"), "崇文门", True),
    ("雍和宫", "东城区", ("雍和宫大街", "北新桥三条"), "雍和宫", True),
    ("东直门", "东城区", ("东直门内大街", "东直门南大街"), "东直门", True),
    ("北京站", "东城区", ("北京站前街", "建国门内大街"), "北京站", True),
    ("南锣鼓巷", "东城区", ("地安门东大街", "交道口南大街"), "南锣鼓巷", True),
    ("天坛", "东城区", ("天坛路", "永定门内大街"), "天坛东门", True),
    ("东四", "东城区", ("东四北大街", "朝阳门内大街"), "东四", True),
    ("西单", "西城区", ("西单北大街", "宣武门内大街"), "西单", True),
    ("前门", "西城区", ("前门大街", "煤市街"), "前门", True),
    ("菜市口", "西城区", ("广安门内大街", "菜市口大街"), "菜市口", True),
    ("西直门", "西城区", ("西直门外大街", "西直门南大街"), "西直门", True),
    ("金融街", "西城区", ("金融大街", "武定侯街"), "阜成门", True),
    ("什刹海", "西城区", ("德胜门内大街", "地安门西大街"), "什刹海", True),
    ("宣武门", "西城区", ("宣武门外大街", "校场口街"), "宣武门", True),
    ("国贸", "朝阳区", ("建国门外大街", "光华路"), "国贸", True),
    ("三里屯", "朝阳区", ("三里屯路", "工人体育场北路"), "团结湖", True),
    ("望京", "朝阳区", ("望京街", "阜通东大街"), "望京", True),
    ("大望路", "朝阳区", ("建国路", "西大望路"), "大望路", True),
    ("双井", "朝阳区", ("广渠路", "东三环中路"), "双井", True),
    ("亚运村", "朝阳区", ("北辰东路", "安立路"), "安立路", True),
    ("奥林匹克公园", "朝阳区", ("北辰西路", "科荟路"), "奥林匹克公园", True),
    ("朝阳公园", "朝阳区", ("朝阳公园路", "农展馆南路"), "枣营", True),
    ("酒仙桥", "朝阳区", ("酒仙桥路", "将台路"), "将台", True),
    ("潘家园", "朝阳区", ("潘家园路", "东三环南路"), "潘家园", True),
    ("三元桥", "朝阳区", ("曙光西里", "东三环北路"), "三元桥", True),
    ("中关村", "海淀区", ("中关村大街", "海淀大街"), "中关村", True),
    ("五道口", "海淀区", ("成府路", "王庄路"), "五道口", True),
    ("公主坟", "海淀区", ("复兴路", "西三环中路"), "公主坟", True),
    ("魏公村", "海淀区", ("中关村南大街", "魏公村路"), "魏公村", True),
    ("西二旗", "海淀区", ("西二旗大街", "后厂村路"), "西二旗", True),
    ("知春路", "海淀区", ("知春路", "学院路"), "知春路", True),
    ("五棵松", "海淀区", ("西翠路", "田村路"), "五棵松", True),
    ("北京南站", "丰台区", ("车站路", "马家堡东路"), "北京南站", True),
    ("北京西站", "丰台区", ("莲花池东路", "广安路"), "北京西站", True),
    ("丰台科技园", "丰台区", ("科学城路", "汽车博物馆东路"), "科怡路", True),
    ("方庄", "丰台区", ("方庄路", "蒲芳路"), "蒲黄榆", True),
    ("六里桥", "丰台区", ("六里桥南里", "西三环南路"), "六里桥", True),
    ("八角", "石景山区", ("石景山路", "八角西街"), "八角游乐园", True),
    ("苹果园", "石景山区", ("苹果园路", "阜石路"), "苹果园", True),
    ("通州北苑", "通州区", ("新华大街", "通惠北路"), "通州北苑", True),
    ("亦庄", "大兴区", ("荣华中路", "天华街"), "荣京东街", True),
    ("回龙观", "昌平区", ("回龙观西大街", "育知东路"), "回龙观", True),
    ("首都机场", "顺义区", ("天竺府前街", "机场南线"), "T2航站楼", False),
]

# Chains that name branches "品牌(北京XX店)"; luxury/upscale chains use "北京XX品牌".
CHAINS = {
    "经济型": ("如家快捷酒店", "汉庭酒店", "7天连锁酒店", "锦江之星", "格林豪泰酒店", "速8酒店",
            "莫泰168", "布丁酒店", "城市便捷酒店", "尚客优快捷酒店", "99旅馆连锁", "海友酒店"),
    "舒适型": ("全季酒店", "维也纳酒店", "亚朵酒店", "桔子酒店", "智选假日酒店", "和颐酒店",
            "麗枫酒店", "宜必思尚品酒店", "锦江都城酒店", "星程酒店", "秋果酒店", "美居酒店"),
    "高档型": ("诺富特酒店", "福朋喜来登酒店", "万怡酒店", "假日酒店", "皇冠假日酒店", "希尔顿逸林酒店"),
    "豪华型": ("洲际酒店", "希尔顿酒店", "喜来登酒店", "威斯汀酒店", "JW万豪酒店", "凯宾斯基饭店"),
}
CORES = ("天伦王朝", "京伦", "贵宾楼", "华侨", "民族", "燕京", "新侨", "兆龙", "昆仑", "长城",
         "友谊", "西苑", "香山", "翠明庄", "京西", "紫玉", "国宾", "京瑞", "龙城", "金台", "泰富",
         "永安", "华融", "远望楼", "东方", "中苑", "京都信苑", "金都", "湖广", "吉庆", "颐和",
         "雅园", "鸿坤", "瑞安", "宝辰", "福康", "嘉悦", "博雅", "汇豪", "安华", "德宝", "京华",
         "贵都", "广电", "昆泰", "首体", "和平", "国安", "万方", "华天", "金源", "富力", "春晖")
# Two-syllable cores in the style of Beijing hotel names (京伦, 华都, 嘉悦 ...).
CORE_FIRST = "京华金国天瑞泰鸿嘉宝福安德龙君凯明盛祥和兴瑞丰润新东西"
CORE_SECOND = "都苑泰安伦华园辰悦源庭府阁轩城苑港湾宁豪庭雅逸"
SUFFIXES = {
    "经济型": ("宾馆", "快捷酒店", "商务酒店", "招待所"),
    "舒适型": ("商务酒店", "酒店", "宾馆", "精品酒店"),
    "高档型": ("大酒店", "饭店", "国际酒店", "酒店"),
    "豪华型": ("大饭店", "酒店", "国际酒店", "饭店"),
}
TYPE_WEIGHTS = (40, 26, 22, 12)
PRICE_RANGE = {"经济型": (110, 450), "舒适型": (250, 800), "高档型": (450, 1600), "豪华型": (800, 3000)}
RATING_MEAN = {"经济型": (4.3, 0.25), "舒适型": (4.4, 0.22), "高档型": (4.5, 0.18), "豪华型": (4.6, 0.15)}
CHAIN_SHARE = {"经济型": 0.85, "舒适型": 0.7, "高档型": 0.5, "豪华型": 0.5}
NULL_PRICE_SHARE = 0.03

# Mutually exclusive groups: (probabilities per type in HOTEL_TYPES order) for each member.
WIFI = {
    "酒店各处提供wifi": (0.25, 0.35, 0.40, 0.45),
    "公共区域和部分房间提供wifi": (0.50, 0.45, 0.45, 0.45),
    "部分房间提供wifi": (0.10, 0.08, 0.05, 0.03),
    "所有房间提供wifi": (0.04, 0.04, 0.03, 0.03),
    "公共区域提供wifi": (0.06, 0.05, 0.04, 0.02),
}
BREAKFAST = {"早餐服务": (0.35, 0.6, 0.65, 0.6), "早餐服务免费": (0.06, 0.08, 0.05, 0.04)}
PARKING = {"收费停车位": (0.15, 0.25, 0.45, 0.6), "免费停车位": (0.2, 0.2, 0.2, 0.15)}
# Independent facilities in the order hotels list them.
FACILITY_P = {
    "宽带上网": (0.8, 0.85, 0.85, 0.85), "免费市内电话": (0.1, 0.2, 0.25, 0.3),
    "免费国内长途电话": (0.02, 0.03, 0.04, 0.05), "国际长途电话": (0.35, 0.6, 0.75, 0.85),
    "吹风机": (0.65, 0.85, 0.9, 0.95), "24小时热水": (0.97, 0.99, 0.99, 1.0),
    "暖气": (0.25, 0.25, 0.2, 0.2), "开放式厨房": (0.02, 0.02, 0.0, 0.0),
    "中式餐厅": (0.25, 0.55, 0.85, 0.95), "西式餐厅": (0.03, 0.15, 0.5, 0.85),
    "残疾人设施": (0.12, 0.3, 0.45, 0.6), "会议室": (0.2, 0.55, 0.85, 0.95),
    "健身房": (0.02, 0.15, 0.5, 0.9), "室内游泳池": (0.0, 0.03, 0.3, 0.7),
    "室外游泳池": (0.0, 0.0, 0.01, 0.04), "温泉": (0.0, 0.005, 0.03, 0.05),
    "SPA": (0.0, 0.03, 0.25, 0.6), "桑拿": (0.01, 0.05, 0.3, 0.55),
    "无烟房": (0.85, 0.92, 0.92, 0.95), "商务中心": (0.12, 0.35, 0.65, 0.85),
    "酒吧": (0.01, 0.08, 0.35, 0.7), "棋牌室": (0.1, 0.2, 0.2, 0.15),
    "接站服务": (0.1, 0.15, 0.15, 0.15), "接机服务": (0.08, 0.2, 0.35, 0.55),
    "接待外宾": (0.25, 0.45, 0.7, 0.85), "洗衣服务": (0.2, 0.45, 0.7, 0.9),
    "行李寄存": (0.82, 0.88, 0.92, 0.95), "租车": (0.08, 0.2, 0.3, 0.4),
    "叫醒服务": (0.82, 0.9, 0.93, 0.95), "看护小孩服务": (0.0, 0.01, 0.04, 0.12),
}
ALL_FACILITIES = tuple(WIFI) + tuple(FACILITY_P) + tuple(BREAKFAST) + tuple(PARKING)
MAX_HOTELS = 1500  # name space holds ~1900 unique names; stay well below it


def _pick_exclusive(rng: random.Random, group: dict, t: int) -> list[str]:
    """At most one member of a mutually exclusive group (a hotel has one wifi policy)."""
    r, acc = rng.random(), 0.0
    for name, probs in group.items():
        acc += probs[t]
        if r < acc:
            return [name]
    return []


def _facilities(rng: random.Random, t: int) -> list[str]:
    chosen = set(_pick_exclusive(rng, WIFI, t))
    chosen.update(f for f, p in FACILITY_P.items() if rng.random() < p[t])
    chosen.update(_pick_exclusive(rng, BREAKFAST, t))
    chosen.update(_pick_exclusive(rng, PARKING, t))
    return [f for f in ALL_FACILITIES if f in chosen]  # stable, catalogue order


def _bj(place: str) -> str:
    """'北京' + place, without doubling it for places like 北京南站."""
    return place if place.startswith("北京") else f"北京{place}"


def _core(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(CORES)
    first, second = rng.choice(CORE_FIRST), rng.choice(CORE_SECOND)
    return first + second if first != second else rng.choice(CORES)


def _name(rng: random.Random, htype: str, area: tuple) -> tuple[str, str, str | None]:
    """(hotel name, street the address must use, stand-alone core or None); a branch named after
    a street sits on that street."""
    landmark, _district, streets, _station, _ = area
    street = rng.choice(streets)
    if rng.random() < CHAIN_SHARE[htype]:
        brand = rng.choice(CHAINS[htype])
        if htype in ("经济型", "舒适型"):
            branch = landmark if rng.random() < 0.6 else street
            return f"{brand}({_bj(branch)}店)", street, None
        return f"{_bj(landmark)}{brand}", street, None
    core = _core(rng)
    return f"北京{core}{rng.choice(SUFFIXES[htype])}", street, core


def _price(rng: random.Random, htype: str) -> int | None:
    if rng.random() < NULL_PRICE_SHARE:
        return None  # real listings sometimes lack a price; keep that case in the data
    lo, hi = PRICE_RANGE[htype]
    return int(round(rng.triangular(lo, hi, lo + (hi - lo) * 0.35)))


def _rating(rng: random.Random, htype: str) -> float:
    mean, sd = RATING_MEAN[htype]
    return round(min(5.0, max(3.0, rng.gauss(mean, sd))), 1)


def _subway(rng: random.Random, area: tuple) -> str:
    station, lettered = area[3], area[4]
    if not lettered or rng.random() < 0.15:
        return f"{station}地铁站"
    return f"{station}地铁站{rng.choice('ABCD')}{rng.choice(['', '', '', '1', '2'])}口"


def generate_hotels(seed: int = 0, n: int = 1000) -> list[dict]:
    """Return `n` hotel dicts (keys: name, type, address, subway, phone, price, rating, facilities).

    Raises DataError when n is outside 1..MAX_HOTELS or unique names run out.
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_HOTELS:
        raise DataError(f"hotel count n must be an integer in 1..{MAX_HOTELS}, got {n!r}")
    rng = random.Random(seed)
    names: set[str] = set()
    used_cores: set[str] = set()  # a stand-alone core (天伦王朝) names one hotel only
    rows = []
    for _ in range(n):
        htype = rng.choices(HOTEL_TYPES, weights=TYPE_WEIGHTS)[0]
        for _attempt in range(200):
            area = rng.choice(AREAS)
            name, street, core = _name(rng, htype, area)
            if name not in names and core not in used_cores:  # None (a chain) is never in it
                break
        else:
            raise DataError(f"ran out of unique hotel names after {len(rows)} hotels; use n <= {len(rows)}")
        names.add(name)
        if core:
            used_cores.add(core)
        t = HOTEL_TYPES.index(htype)
        address = f"北京{area[1]}{street}{rng.randint(1, 299)}号"
        phone = f"010-{rng.choice('568')}{rng.randint(0, 9999999):07d}"
        rows.append({
            "name": name, "type": htype, "address": address, "subway": _subway(rng, area),
            "phone": phone, "price": _price(rng, htype), "rating": _rating(rng, htype),
            "facilities": _facilities(rng, t),
        })
    return rows
