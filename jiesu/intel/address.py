"""Address resolution (地址解析, SPEC §8): free text → district → street/township (→ community),
and coordinates → district/street by boundary polygons. Pure: rows in, `Resolution` out; the one
database-side builder at the end imports its tables when called.

How a text is read
------------------
1. **Surfaces.** `Gazetteer.from_rows` turns the city's divisions and its places table into
   surface forms, each pointing at one or more *targets* (a district, a street, a community)
   with a weight that says how much the surface alone proves:

   - a district's name (朝阳区, 1.0) and its name without 区 (朝阳, 0.8);
   - a street's official name (望京街道, 1.0); the same stem with another division suffix, as
     people say it (望京地区, 来广营乡, 0.85: 地区 were 乡 before, and 街道/地区/镇/乡 get mixed
     up); the bare stem (望京, 亚运村), worth less the shorter it is (0.75 from three
     characters, 0.6 for two); a stem that is also a district's bare name (海淀, 丰台, 密云)
     means the district; a stem that is an everyday word (平房, 天桥, 光明: `COMMON_WORDS`)
     weighs 0.3 unless a road or estate word follows it (古城大街, 光明里);
   - the pack's `places.csv`: aliases (建国门外 → 建外街道, 宣武区 → 西城区), landmarks,
     estates and communities (0.9, 0.85), roads (0.7; a road that crosses streets points at its
     district only, so it narrows to the district and no further);
   - the city's own name (北京市, 北京) and other provinces and cities (长春市, 河北省, 燕郊):
     markers, not places; everyday words that straddle a place name (交通运输 holds 通运,
     正常营业 常营: `BLOCKERS`): read and ignored.
2. **Matching.** One Aho–Corasick automaton over all surfaces, read leftmost-longest:
   朝阳门外大街 is 朝阳门外 (朝外街道), not 朝阳 + 门; 北京大学 is the landmark, not the city.
3. **Readings.** Every street and district any match points at is a reading; its score is
   the sum, over distinct surfaces (a name said twice is not twice the evidence), of the best
   weight each lends it: a target naming that street, or its district without a street. So
   朝阳区八里庄 scores Chaoyang's 八里庄 1.0 + 0.75 and Haidian's 0.75: the consistent
   combination wins. A district alone wins only with strictly more support than the best
   street, and a reading under 0.5 (an everyday word alone) is only a candidate.
4. **Conflicts.** Two streets (or two districts) with equal support are not guessed between:
   the answer keeps what they share (their district, if the same) and lists both as
   candidates. A district that contradicts the winning street is kept as a contradiction and
   costs confidence (海淀区望京街道 → 望京街道, flagged).
5. **Elsewhere.** The gazetteer knows one city. A text that names another province or city
   before anything local, and never says 北京, resolves to nothing, with `elsewhere` set
   (长春市朝阳区 is not Beijing's 朝阳区); so does a text whose only local support is weak (a
   bare two-character stem). A bare city name (长春, 燕郊) counts as such a sign only right
   before another place name or at the end of the text: 兰州拉面 is a noodle shop.
6. **Confidence.** `1 - exp(-1.6 · score)` (one official street name → 0.80; district plus
   street → 0.94; a bare two-character stem → 0.62), scaled by the margin over the best
   incompatible reading (`0.5 + 0.5 · margin`), × 0.6 for a contradiction, × 0.8 when
   another city is named too; 0 when nothing is resolved.

Texts are normalised first (NFKC: full-width digits and letters, then upper-case ASCII, no
whitespace); spans are offsets into `normalise(text)`. House numbers, building and unit numbers
match nothing and are ignored.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import ahocorasick

from jiesu.intel.geo import Boundaries, Datum

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from jiesu.citypack.parse import Pack

PLACE_KINDS = ("alias", "landmark", "road", "community", "estate")
DIVISION_KINDS = ("city", "district", "street", "community")
# Township-level suffixes, longest first so 街道办事处 is stripped before 街道.
STREET_SUFFIXES = ("街道办事处", "地区办事处", "街道办", "街道", "地区", "镇", "乡")
# The suffixes people put after a stem, whatever the official one (乡 became 地区 in the
# 2000s, 镇 and 地区 are one office in many places).
SPOKEN_SUFFIXES = ("街道", "地区", "镇", "乡", "街道办事处", "街道办", "地区办事处")
ETHNIC = ("回族", "满族", "蒙古族", "朝鲜族", "壮族", "苗族", "土家族")

WEIGHTS = {
    "district.name": 1.0,  # 朝阳区
    "district.bare": 0.8,  # 朝阳
    "street.name": 1.0,  # 望京街道 (official)
    "street.suffix": 0.85,  # 望京地区, 来广营乡
    "street.bare3": 0.75,  # 亚运村, 回龙观
    "street.bare2": 0.6,  # 望京, 双井
    "street.common": 0.3,  # 平房, 天桥, 光明: an everyday word first (COMMON_WORDS)
    "community.name": 0.9,
    "alias": 0.9,
    "landmark": 0.9,
    "community": 0.9,
    "estate": 0.85,
    "road": 0.7,
}
STRENGTH = 1.6  # confidence = 1 - exp(-STRENGTH * score)
CONTRADICTION = 0.6
ELSEWHERE_TOO = 0.8
WEAK = 0.9  # a text whose best support is below this (bare stems only) yields to elsewhere signs
MIN_SCORE = 0.5  # below this a reading is only a candidate: an everyday word alone is no address
MAX_CANDIDATES = 5


def _words(text: str) -> list[str]:
    """The word tables below are written as space-separated text, as a reviewer reads them."""
    return text.split()


# ---- other provinces and cities (national reference data, not a city's setting) ----------
# Written out by hand from the official division list: provincial-level names, prefecture-level
# cities, and the county-level places around Beijing that callers most often name (燕郊, 涿州).
# The gazetteer drops its own city from these (北京 for the Beijing pack, 天津 for a Tianjin one).

PROVINCES = _words(
    "北京市 天津市 上海市 重庆市 河北省 山西省 辽宁省 吉林省 黑龙江省 江苏省 浙江省 安徽省 福建省 "
    "江西省 山东省 河南省 湖北省 湖南省 广东省 海南省 四川省 贵州省 云南省 陕西省 甘肃省 青海省 "
    "台湾省 内蒙古自治区 广西壮族自治区 西藏自治区 宁夏回族自治区 新疆维吾尔自治区 "
    "香港特别行政区 澳门特别行政区"
)
PROVINCE_SHORT = _words("内蒙古 广西 西藏 宁夏 新疆 香港 澳门")
CITIES = _words(
    "石家庄 唐山 秦皇岛 邯郸 邢台 保定 张家口 承德 沧州 廊坊 衡水 "
    "太原 大同 阳泉 长治 晋城 朔州 晋中 运城 忻州 临汾 吕梁 "
    "呼和浩特 包头 乌海 赤峰 通辽 鄂尔多斯 呼伦贝尔 巴彦淖尔 乌兰察布 "
    "沈阳 大连 鞍山 抚顺 本溪 丹东 锦州 营口 阜新 辽阳 盘锦 铁岭 朝阳 葫芦岛 "
    "长春 吉林 四平 辽源 通化 白山 松原 白城 "
    "哈尔滨 齐齐哈尔 鸡西 鹤岗 双鸭山 大庆 伊春 佳木斯 七台河 牡丹江 黑河 绥化 "
    "南京 无锡 徐州 常州 苏州 南通 连云港 淮安 盐城 扬州 镇江 泰州 宿迁 "
    "杭州 宁波 温州 嘉兴 湖州 绍兴 金华 衢州 舟山 台州 丽水 "
    "合肥 芜湖 蚌埠 淮南 马鞍山 淮北 铜陵 安庆 黄山 滁州 阜阳 宿州 六安 亳州 池州 宣城 "
    "福州 厦门 莆田 三明 泉州 漳州 南平 龙岩 宁德 "
    "南昌 景德镇 萍乡 九江 新余 鹰潭 赣州 吉安 宜春 抚州 上饶 "
    "济南 青岛 淄博 枣庄 东营 烟台 潍坊 济宁 泰安 威海 日照 临沂 德州 聊城 滨州 菏泽 "
    "郑州 开封 洛阳 平顶山 安阳 鹤壁 新乡 焦作 濮阳 许昌 漯河 三门峡 南阳 商丘 信阳 周口 驻马店 "
    "武汉 黄石 十堰 宜昌 襄阳 鄂州 荆门 孝感 荆州 黄冈 咸宁 随州 "
    "长沙 株洲 湘潭 衡阳 邵阳 岳阳 常德 张家界 益阳 郴州 永州 怀化 娄底 "
    "广州 韶关 深圳 珠海 汕头 佛山 江门 湛江 茂名 肇庆 惠州 梅州 汕尾 河源 阳江 清远 东莞 中山 "
    "潮州 揭阳 云浮 "
    "南宁 柳州 桂林 梧州 北海 防城港 钦州 贵港 玉林 百色 贺州 河池 来宾 崇左 "
    "海口 三亚 儋州 "
    "成都 自贡 攀枝花 泸州 德阳 绵阳 广元 遂宁 内江 乐山 南充 眉山 宜宾 广安 达州 雅安 巴中 资阳 "
    "贵阳 六盘水 遵义 安顺 毕节 铜仁 "
    "昆明 曲靖 玉溪 保山 昭通 丽江 普洱 临沧 "
    "拉萨 日喀则 昌都 林芝 "
    "西安 铜川 宝鸡 咸阳 渭南 延安 汉中 榆林 安康 商洛 "
    "兰州 嘉峪关 金昌 白银 天水 武威 张掖 平凉 酒泉 庆阳 定西 陇南 "
    "西宁 银川 石嘴山 吴忠 固原 中卫 乌鲁木齐 克拉玛依 吐鲁番 哈密"
)
# County-level places and prefectures written with their own suffix.
COUNTIES = _words(
    "三河市 涿州市 霸州市 遵化市 高碑店市 固安县 永清县 香河县 大厂回族自治县 怀来县 涿鹿县 "
    "兴隆县 滦平县 丰宁满族自治县 赤城县 蓟州区 武清区 宝坻区 燕郊镇 雄安新区 大兴安岭地区 "
    "延边朝鲜族自治州"
)
# Bare names that are everyday words or Beijing places first (北海公园, 中山公园, 西安门,
# 广安门, 兴隆家园 …): only their suffixed forms (北海市) are signs of elsewhere.
NOT_BARE = set(
    _words(
        "北海 中山 西安 广安 朝阳 大同 延安 来宾 白银 普洱 安康 黄山 白山 山南 三明 日照 东营 "
        "丽水 玉林 黑河 新余 吉安 安顺 兴隆 宝山 海东 长治 泰安 永州 常德 定西"
    )
)


# ---- everyday words (language knowledge, not a city's setting) -----------------------------
# Township stems that are ordinary words first: 平房 is a bungalow, 天桥 a footbridge, 光明 "bright".
# Bare, they support a reading only beside other evidence (朝阳区平房 is the township; 平房漏雨 is
# a leaking roof). Their suffixed forms (平房乡, 天桥街道) keep full weight.
COMMON_WORDS = set(
    _words(
        "平房 天桥 光明 胜利 向阳 新村 新华 东风 曙光 安定 清水 温泉 城南 城北 城关 果园 鼓楼 古城 "
        "和义 清源 仁和 东升 新镇 滨河 龙泉 龙山 宝山 四海 永宁 北庄 石城 康庄 荣华 高岭 迎风 八角 "
        "永定 中仓 永顺 兴丰 博兴 石园 空港 旺泉 双丰 百善 南口 星城 东湖 城子 大台 王平 清河 沙河"
    )
)
# …but an everyday word followed by a road or estate word is a place name again: 古城大街,
# 光明里, 天桥南路 (a direction may come between).
PLACE_USE = re.compile(r"(东|西|南|北|中)?(大街|路|街|里|桥|村|站|小区|社区|公园|地铁)")
# Everyday words that straddle a place name (交通运输 holds 通运, 正常营业 常营, 以上地方 上地):
# read as words, so leftmost-longest matching never sees the place inside them. A word that is
# also one of the city's place names stays a place.
BLOCKERS = _words(
    "交通 正常 以上 上地方 和义务 山清水秀 光明正大 北大门 南大门 人行天桥 过街天桥 大兴土木 "
    "新华社 新华网 新华书店 东风汽车 胜利油田 温泉酒店 古城墙 平房区"
)


def _elsewhere_forms() -> list[tuple[str, bool]]:
    """(surface, is_full) for every sign of another province or city."""
    forms: list[tuple[str, bool]] = []
    for name in PROVINCES:
        forms.append((name, True))
        bare = re.sub(r"(省|市|特别行政区|维吾尔自治区|回族自治区|壮族自治区|自治区)$", "", name)
        if bare != name and len(bare) >= 2:
            forms.append((bare, False))
    forms += [(name, False) for name in PROVINCE_SHORT]
    for name in CITIES:
        forms.append((name + "市", True))
        forms.append((name, False))
    forms.append(("大兴安岭", True))  # always elsewhere: longer than Beijing's 大兴
    for name in COUNTIES:
        forms.append((name, True))
        bare = re.sub(
            r"(回族自治县|满族自治县|朝鲜族自治州|自治县|新区|地区|市|县|区|镇)$", "", name
        )
        if bare != name and len(bare) >= 2:
            forms.append((bare, False))
    return [(s, full) for s, full in forms if full or s not in NOT_BARE]


# ---- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """What a surface form may mean: a division at some level, with a weight."""

    kind: str  # city elsewhere district street community alias landmark road estate
    district: str | None
    street: str | None
    community: str | None
    weight: float
    code: str | None  # the unit the surface names (a place's unit)
    strong: bool = True  # for elsewhere: a full name (长春市) rather than a bare one (长春)
    common: bool = False  # a bare stem that is an everyday word (COMMON_WORDS)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One matched span of the normalised text and what it was read as."""

    start: int
    end: int
    text: str
    kind: str
    code: str | None
    weight: float

    def __str__(self) -> str:
        where = f" → {self.code}" if self.code else ""
        return f"{self.text}（{KIND_NAMES.get(self.kind, self.kind)}{where}）"


KIND_NAMES = {
    "city": "本市",
    "elsewhere": "外地",
    "district": "区",
    "street": "街乡",
    "community": "社区",
    "alias": "别名",
    "landmark": "地标",
    "road": "道路",
    "estate": "小区",
}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ranked reading of the text: a street (with its district) or a district alone."""

    district: str | None
    street: str | None
    score: float
    confidence: float
    district_name: str | None = None
    street_name: str | None = None


@dataclass(frozen=True)
class Resolution:
    """The place a text (or a point) names. Codes are the pack's unit codes."""

    text: str
    district: str | None = None
    street: str | None = None
    community: str | None = None
    confidence: float = 0.0
    evidence: tuple[Evidence, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    district_name: str | None = None
    street_name: str | None = None
    elsewhere: str | None = None  # the other city or province the text names, if refused
    contradiction: bool = False  # a stated district disagrees with the street found

    @property
    def ambiguous(self) -> bool:
        """More than one reading is close enough to matter (the agent should pick)."""
        return (
            len(self.candidates) > 1 and self.candidates[1].score >= 0.75 * self.candidates[0].score
        )


# ---- normalisation -------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC (full-width digits, letters and brackets), upper-case ASCII, no whitespace."""
    text = unicodedata.normalize("NFKC", text or "")
    return _SPACE.sub("", text).upper()


def street_stem(name: str) -> str:
    for suffix in STREET_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


# ---- the gazetteer -------------------------------------------------------------------------


def _get(row: Any, key: str) -> Any:
    if isinstance(row, Mapping):
        return row.get(key)
    return getattr(row, key, None)


def _aliases(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split("|") if p.strip()]
    return [str(p).strip() for p in value if str(p).strip()]


@dataclass
class _Builder:
    surfaces: dict[str, dict[tuple[str, str | None, str | None, str | None], Target]] = field(
        default_factory=dict
    )

    def add(self, surface: str, target: Target) -> None:
        surface = normalise(surface)
        if len(surface) < 2:  # one character (东, 张) names nothing reliably
            return
        key = (target.kind if target.kind in ("city", "elsewhere", "word") else "place",
               target.district, target.street, target.community)  # fmt: skip
        known = self.surfaces.setdefault(surface, {})
        if key not in known or known[key].weight < target.weight:
            known[key] = target


class Gazetteer:
    """The city's place names, built once, read by any number of threads."""

    def __init__(
        self,
        surfaces: Mapping[str, Sequence[Target]],
        names: Mapping[str, str],
        parents: Mapping[str, str | None],
        kinds: Mapping[str, str],
        *,
        city: str | None = None,
        boundaries: Boundaries | None = None,
    ) -> None:
        self.names = dict(names)
        self.parents = dict(parents)
        self.kinds = dict(kinds)
        self.city = city
        self.boundaries = boundaries
        self.size = len(surfaces)
        self._automaton = ahocorasick.Automaton()
        for surface, targets in surfaces.items():
            self._automaton.add_word(surface, (surface, tuple(targets)))
        if self.size:
            self._automaton.make_automaton()

    # -- building --

    @classmethod
    def from_rows(
        cls,
        *,
        units: Iterable[Any],
        places: Iterable[Any] = (),
        boundaries: Boundaries | None = None,
    ) -> Gazetteer:
        """Build from plain rows (mappings or objects): units with code, name, kind, parent,
        aliases (list or `|`-separated) and optionally short_name; places with name, kind,
        unit, aliases. Units of other kinds (departments, companies) are ignored."""
        rows = [u for u in units if _get(u, "kind") in DIVISION_KINDS]
        kinds = {str(_get(u, "code")): str(_get(u, "kind")) for u in rows}
        names = {str(_get(u, "code")): str(_get(u, "name")) for u in rows}
        parents = {
            str(_get(u, "code")): (str(_get(u, "parent")) if _get(u, "parent") else None)
            for u in rows
        }

        def district_of(code: str | None) -> str | None:
            while code is not None and kinds.get(code) not in (None, "district"):
                code = parents.get(code)
            return code if code is not None and kinds.get(code) == "district" else None

        def street_of(code: str | None) -> str | None:
            while code is not None and kinds.get(code) not in (None, "street", "district"):
                code = parents.get(code)
            return code if code is not None and kinds.get(code) == "street" else None

        b = _Builder()
        city_names: set[str] = set()
        district_bare: set[str] = set()
        for u in rows:
            code, name, kind = str(_get(u, "code")), str(_get(u, "name")), str(_get(u, "kind"))
            spoken = [*_aliases(_get(u, "aliases")), *_aliases(_get(u, "short_name"))]
            if kind == "city":
                target = Target("city", None, None, None, 1.0, code)
                city_names.update(normalise(n) for n in (name, *spoken))
                for n in (name, *spoken, name.removesuffix("市")):
                    b.add(n, target)
            elif kind == "district":
                bare = [n for n in (*spoken, re.sub(r"(区|县)$", "", name)) if n != name]
                district_bare.update(normalise(n) for n in bare)
        for u in rows:
            code, name, kind = str(_get(u, "code")), str(_get(u, "name")), str(_get(u, "kind"))
            spoken = [*_aliases(_get(u, "aliases")), *_aliases(_get(u, "short_name"))]
            if kind == "district":
                b.add(name, Target("district", code, None, None, WEIGHTS["district.name"], code))
                if name.endswith("区"):  # 密云县, 延庆县: the names before they became districts
                    b.add(name[:-1] + "县", Target("district", code, None, None, 0.9, code))
                for n in (*spoken, re.sub(r"(区|县)$", "", name)):
                    if n != name:
                        b.add(
                            n, Target("district", code, None, None, WEIGHTS["district.bare"], code)
                        )
            elif kind == "street":
                d = district_of(parents[code])
                b.add(name, Target("street", d, code, None, WEIGHTS["street.name"], code))
                stems = {street_stem(name), *(street_stem(a) for a in spoken)}
                for ethnic in ETHNIC:  # 于家务回族乡 is 于家务 to everyone
                    stems |= {s.replace(ethnic, "") for s in stems if ethnic in s}
                for stem in stems:
                    if len(stem) < 2:
                        continue
                    for suffix in SPOKEN_SUFFIXES:
                        if stem + suffix != name:
                            b.add(stem + suffix,
                                  Target("street", d, code, None, WEIGHTS["street.suffix"], code))  # fmt: skip
                    if normalise(stem) in district_bare or normalise(stem) in city_names:
                        continue  # 海淀, 密云: the district's name first
                    w = WEIGHTS["street.bare3"] if len(stem) >= 3 else WEIGHTS["street.bare2"]
                    common = stem in COMMON_WORDS
                    if common:
                        w = WEIGHTS["street.common"]
                    b.add(stem, Target("street", d, code, None, w, code, common=common))
            elif kind == "community":
                s = street_of(parents[code])
                target = Target(
                    "community", district_of(s), s, name, WEIGHTS["community.name"], code
                )
                for n in (name, *spoken):
                    b.add(n, target)
        for p in places:
            unit = str(_get(p, "unit"))
            kind = str(_get(p, "kind"))
            if unit not in kinds or kind not in PLACE_KINDS:
                continue  # a pack's parser refuses these; rows from elsewhere are skipped
            level = kinds[unit]
            d = unit if level == "district" else district_of(unit)
            s = street_of(unit) if level in ("street", "community") else None
            c = None
            if kind == "community":
                c = str(_get(p, "name"))
            elif level == "community":
                c = names[unit]
            target = Target(kind, d, s, c, WEIGHTS[kind], unit)
            for n in (str(_get(p, "name")), *_aliases(_get(p, "aliases"))):
                b.add(n, target)
        local = set(b.surfaces)
        for word in BLOCKERS:
            if word not in local:
                b.add(word, Target("word", None, None, None, 0.0, None))
        for surface, full in _elsewhere_forms():
            if normalise(surface) in city_names or (surface in local):
                continue  # the city's own name, or a local place (朝阳 is Beijing's first)
            b.add(surface, Target("elsewhere", None, None, None, 1.0, None, strong=full))
        city = next((str(_get(u, "code")) for u in rows if _get(u, "kind") == "city"), None)
        surfaces = {s: list(t.values()) for s, t in b.surfaces.items()}
        return cls(surfaces, names, parents, kinds, city=city, boundaries=boundaries)

    @classmethod
    def from_pack(cls, pack: Pack, *, boundaries: Boundaries | None = None) -> Gazetteer:
        """From a parsed city pack (`citypack.parse.read_pack`), without a database."""
        return cls.from_rows(units=pack.units, places=pack.places, boundaries=boundaries)

    # -- reading --

    def name(self, code: str | None) -> str | None:
        return self.names.get(code) if code else None

    def district_of(self, street: str) -> str | None:
        return self.parents.get(street)

    def resolve(self, text: str) -> Resolution:
        """The district, street and community a free-text address names (module docstring)."""
        t = normalise(text)
        if not self.size or not t:
            return Resolution(t)
        matches = [
            _Match(end + 1 - len(surface), end + 1, surface, targets)
            for end, (surface, targets) in self._automaton.iter_long(t)
        ]
        matches = [_place_use(m, t) for m in matches]
        home = [m for m in matches if m.kind == "city"]
        # A name said twice is not twice the evidence: each surface counts once (its first).
        firsts = {m.surface: m for m in reversed(matches) if m.kind == "place"}
        local = sorted(firsts.values())
        foreign = self._elsewhere_sign(matches, len(t))
        hyps = self._hypotheses(local)
        if not hyps:
            if foreign is not None:
                return Resolution(t, elsewhere=foreign.surface, evidence=(self._evidence(foreign),))
            return Resolution(t)

        best = hyps[0]
        street, district = best.street, best.district
        rivals = [h for h in hyps[1:] if not _compatible(best, h)]
        support = [m for m in local if _lends(m.targets, street, district) > 0]
        candidates = self._candidates(best, rivals) if rivals else ()
        if best.score < MIN_SCORE:  # an everyday word alone (平房漏雨): only a candidate
            return Resolution(
                t,
                candidates=self._candidates(best, rivals),
                elsewhere=foreign.surface if foreign is not None else None,
            )
        # Another city named before anything local (or local support too weak to stand on),
        # and 北京 nowhere: not this city's address.
        early = foreign is not None and (foreign.start < support[0].start or best.score < WEAK)
        if foreign is not None and early and not home:
            return Resolution(
                t,
                elsewhere=foreign.surface,
                evidence=(self._evidence(foreign),),
                candidates=candidates,
            )

        # Equal support for two readings at the same level (two streets, two districts): no
        # guess, keep only what they share. A street tied with a bare district elsewhere is
        # not such a tie: the street says more, and the district is a contradiction.
        tie = [
            h for h in rivals if h.score >= best.score and (h.street is None) == (street is None)
        ]
        if tie:
            same = street is not None and all(
                self.parents.get(h.street or "") == district for h in tie
            )
            street, district = None, (district if same else None)
            support = [m for m in support if _lends(m.targets, None, district) > 0]

        second = rivals[0].score if rivals else 0.0
        strength = 1 - math.exp(-STRENGTH * best.score)
        confidence = strength * (0.5 + 0.5 * (best.score - second) / best.score)
        contradiction = district is not None and any(
            tg.kind == "district" and tg.district != district
            for m in local
            if _lends(m.targets, street, district) == 0
            for tg in m.targets
        )
        if contradiction:
            confidence *= CONTRADICTION
        if foreign is not None:
            confidence *= ELSEWHERE_TOO
        if district is None:  # a tie left nothing: the candidates carry the weights
            confidence = 0.0
        community = next(
            (tg.community for m in support for tg in m.targets
             if street is not None and tg.community and tg.street == street), None,
        )  # fmt: skip
        return Resolution(
            t,
            district=district,
            street=street,
            community=community,
            confidence=round(confidence, 3),
            evidence=tuple(self._evidence(m, street, district) for m in sorted(home + support)),
            candidates=candidates,
            district_name=self.name(district),
            street_name=self.name(street),
            contradiction=contradiction,
        )

    def resolve_point(self, lng: float, lat: float, *, gcj02: bool = True) -> Resolution:
        """The district (and street, where the boundaries have streets) at a point. The point is
        GCJ-02 as Chinese maps give it, or WGS-84 (GPS) with `gcj02=False`. Without boundaries,
        or outside them, nothing is found (confidence 0)."""
        text = f"{lng:.6f},{lat:.6f}"
        if self.boundaries is None:
            return Resolution(text)
        datum: Datum = "gcj02" if gcj02 else "wgs84"
        hit = self.boundaries.locate(lng, lat, datum=datum)
        if hit is None:
            return Resolution(text)
        kind = self.kinds.get(hit.code)
        street = hit.code if kind == "street" else None
        district = self.parents.get(hit.code) if street else hit.code
        # Boundary files are simplified: within ~200 m of an edge the other side is possible.
        confidence = 0.95 if hit.border_m >= 200 else 0.6 + 0.35 * hit.border_m / 200
        return Resolution(
            text,
            district=district,
            street=street,
            confidence=round(confidence, 3),
            district_name=self.name(district),
            street_name=self.name(street),
        )

    # -- internals --

    def _elsewhere_sign(self, matches: list[_Match], length: int) -> _Match | None:
        """The first name of another province or city that reads as part of an address: a full
        name (长春市) anywhere; a bare one (长春) right before another place name or at the end
        of the text, so that 兰州拉面 or 四川饭店 is a shop, not a city."""
        for i, m in enumerate(matches):
            if m.kind != "elsewhere":
                continue
            if m.targets[0].strong or m.end == length:
                return m
            nxt = matches[i + 1] if i + 1 < len(matches) else None
            if nxt is not None and nxt.start == m.end and nxt.kind in ("place", "elsewhere"):
                return m
        return None

    def _hypotheses(self, local: list[_Match]) -> list[_Hypothesis]:
        streets: dict[str, str | None] = {}
        districts: set[str] = set()
        for m in local:
            for tg in m.targets:
                if tg.street is not None:
                    streets[tg.street] = tg.district
                elif tg.district is not None:
                    districts.add(tg.district)
        hyps = [
            _Hypothesis(sum(_lends(m.targets, s, d) for m in local), s, d)
            for s, d in streets.items()
        ]
        hyps += [
            _Hypothesis(sum(_lends(m.targets, None, d) for m in local), None, d) for d in districts
        ]
        # Most support first; on equal support a street before a bare district (it says more),
        # then the code, so that the answer never depends on set order.
        hyps.sort(
            key=lambda h: (-round(h.score, 9), h.street is None, h.street or "", h.district or "")
        )
        return hyps

    def _candidates(self, best: _Hypothesis, rivals: list[_Hypothesis]) -> tuple[Candidate, ...]:
        ranked = [best, *rivals][:MAX_CANDIDATES]
        total = sum(h.score for h in ranked) or 1.0
        return tuple(
            Candidate(
                h.district,
                h.street,
                round(h.score, 3),
                round(h.score / total, 3),
                self.name(h.district),
                self.name(h.street),
            )
            for h in ranked
        )

    def _evidence(
        self, m: _Match, street: str | None = None, district: str | None = None
    ) -> Evidence:
        chosen = next((tg for tg in m.targets if _lends((tg,), street, district) > 0), m.targets[0])
        return Evidence(m.start, m.end, m.surface, chosen.kind, chosen.code, chosen.weight)


class _Match(NamedTuple):
    start: int
    end: int
    surface: str
    targets: tuple[Target, ...]

    @property
    def kind(self) -> str:
        """city (the home city's name), elsewhere, word (an everyday word), or place."""
        first = self.targets[0].kind
        return first if first in ("city", "elsewhere", "word") else "place"


class _Hypothesis(NamedTuple):
    score: float
    street: str | None
    district: str | None


def _place_use(m: _Match, text: str) -> _Match:
    """An everyday-word stem used as a place name (古城大街) weighs as any bare stem."""
    if not any(tg.common for tg in m.targets) or not PLACE_USE.match(text, m.end):
        return m
    bare = WEIGHTS["street.bare2"]
    targets = tuple(replace(tg, weight=bare, common=False) if tg.common else tg for tg in m.targets)
    return m._replace(targets=targets)


def _lends(targets: Sequence[Target], street: str | None, district: str | None) -> float:
    """The support a match gives the reading (street, district): its best target that names
    that street, or the street's district without naming a street."""
    best = 0.0
    for tg in targets:
        if (street is not None and tg.street == street) or (
            tg.street is None and tg.district is not None and tg.district == district
        ):
            best = max(best, tg.weight)
    return best


def _compatible(best: _Hypothesis, other: _Hypothesis) -> bool:
    """`other` does not compete with `best`: the same street, or the bare district the best
    reading lies in."""
    if other.street is not None:
        return other.street == best.street
    return other.district == best.district


# ---- database side -------------------------------------------------------------------------


def gazetteer_from_db(*, db_session: Session, boundaries: str | Path | None = None) -> Gazetteer:
    """Build the gazetteer from the active units and places of the database (a pack load fills
    both). Callers cache it: `intel.service.gazetteer` keeps one per process until the
    reference data changes (a pack load bumps it). `boundaries`: a GeoJSON file of district or
    street polygons in GCJ-02, keyed by unit code, for `resolve_point`."""
    from sqlalchemy import select
    from sqlalchemy.orm import aliased

    from jiesu.intel.models import Place
    from jiesu.org.models import Unit

    parent = aliased(Unit)
    unit_rows = db_session.execute(
        select(Unit.code, Unit.name, Unit.kind, parent.code, Unit.aliases, Unit.short_name)
        .outerjoin(parent, Unit.parent_id == parent.id)
        .where(Unit.active.is_(True), Unit.kind.in_(DIVISION_KINDS))
    ).all()
    units = [
        {"code": c, "name": n, "kind": k, "parent": p, "aliases": a or [], "short_name": sn}
        for c, n, k, p, a, sn in unit_rows
    ]
    place_rows = db_session.execute(
        select(Place.name, Place.kind, Unit.code, Place.aliases)
        .join(Unit, Place.unit_id == Unit.id)
        .where(Place.active.is_(True))
    ).all()
    places = [{"name": n, "kind": k, "unit": u, "aliases": a or []} for n, k, u, a in place_rows]
    bounds = Boundaries.from_geojson(boundaries) if boundaries else None
    return Gazetteer.from_rows(units=units, places=places, boundaries=bounds)
