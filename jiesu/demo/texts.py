"""Demo ticket wording from a pack's `demo_texts.yaml` (format: docs/citypack.md).

Every content is read for what kind of request its wording makes (`wording_class`): a danger
(燃气味, 漏电, 塌陷 …: urgent, a help or report, never a question), a thank-you, a question, a
suggestion, or a matter to handle (a complaint, a request for help, a report). A ticket's text is
drawn among the contents whose wording fits its request type, under the title that fits the
content best, so texts, request types and urgency agree.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

# libyaml when present: the demo texts are large enough for the pure-Python parser to show.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# What a wording asks for, checked in this order (the first that matches wins), and the request
# types it may be filed under. About the Chinese language, not the city: not pack data.
CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "danger": ("燃气味", "煤气味", "漏气", "燃气泄漏", "煤气泄漏", "漏电", "起火", "着火了",
               "冒烟", "塌陷", "坍塌", "困人", "被困", "滑坡", "触电"),
    "praise": ("表扬", "感谢", "感激", "点赞", "锦旗", "谢谢"),
    "consult": ("咨询", "请问", "想问", "想了解", "问一下", "问问", "吗？", "吗。", "吗，",
                "怎么申请", "怎么办理", "如何办理", "需要什么", "哪些材料", "什么条件", "哪里办"),
    "suggest": ("建议", "希望增设", "能否增设", "希望能增加", "希望增加"),
}  # fmt: skip
CLASS_TYPES: dict[str, tuple[str, ...]] = {
    "danger": ("help", "report"),
    "praise": ("praise",),
    "consult": ("consult",),
    "suggest": ("suggest",),
    "matter": ("complain", "help", "report"),
}
# Wording for a request type a category's own texts do not make (a question about a category
# whose texts are all complaints), unless the pack gives its own top-level `by_type`.
GENERIC_BY_TYPE: dict[str, dict[str, list[str]]] = {
    "consult": {
        "titles": ["咨询{name}相关政策", "咨询{name}办理流程"],
        "contents": [
            "想咨询一下{name}方面的政策，我住在{district}{street}{community}，这种情况应该找哪个部门，需要准备什么材料？",
            "请问{name}的事情在哪里办理，大概需要多长时间？",
        ],
    },
    "praise": {
        "titles": ["表扬{street}工作人员", "感谢{name}问题办理及时"],
        "contents": [
            "我之前反映的{name}问题，{street}的工作人员很快就来处理了，态度也很好，特别感谢，想表扬一下。",
            "上次打12345反映{community}的{name}问题，没几天就解决了，感谢热线和办理单位，给你们点赞。",
        ],
    },
    "suggest": {
        "titles": ["关于{name}的建议", "建议改进{name}工作"],
        "contents": [
            "我是{district}{street}{community}的居民，关于{name}有个建议：希望相关部门多听听居民的意见，把工作做得更细一些。",
            "建议{district}在{name}方面多做宣传，很多居民不清楚政策，办事常常跑冤枉路。",
        ],
    },
}


_SLOT = re.compile(r"\{[a-z]+\}")


def wording_class(text: str) -> str:
    """danger | praise | consult | suggest | matter (see CLASS_WORDS)."""
    for name, words in CLASS_WORDS.items():
        if any(w in text for w in words):
            return name
    return "matter"


@dataclass(frozen=True)
class Text:
    """One content with the titles that fit it (best first) and what kind of request it makes."""

    content: str
    titles: tuple[str, ...]
    kind: str  # a wording class

    @property
    def urgent(self) -> bool:
        return self.kind == "danger"


@dataclass(frozen=True)
class Wording:
    titles: tuple[str, ...]
    contents: tuple[str, ...]


@dataclass(frozen=True)
class CategoryTexts:
    wording: Wording
    by_type: dict[str, Wording] = field(default_factory=dict)
    request_types: dict[str, float] = field(default_factory=dict)
    season: dict[str, float] = field(default_factory=dict)
    weight: float = 1.0
    name: str = ""
    # the contents that may be filed under each request type (empty: none of its wording fits)
    fitting: dict[str, tuple[Text, ...]] = field(default_factory=dict)
    districts: dict[str, float] = field(default_factory=dict)  # empty: anywhere


@dataclass(frozen=True)
class Filled:
    title: str
    content: str
    address: str
    request_type: str
    urgent: bool


class PlaceLike(Protocol):
    district_name: str
    street_name: str


def _one(rng: random.Random, seq: Any) -> Any:
    return seq[int(rng.random() * len(seq))]


def _wording(entry: dict[str, Any] | None) -> Wording | None:
    if not entry or not entry.get("titles") or not entry.get("contents"):
        return None
    return Wording(tuple(entry["titles"]), tuple(entry["contents"]))


def _bigrams(text: str) -> set[str]:
    plain = _SLOT.sub("", text)
    return {plain[i : i + 2] for i in range(len(plain) - 1)}


def pair(wording: Wording, fallback: dict[str, tuple[str, ...]]) -> list[Text]:
    """Each content under the titles that fit it: a title of the same kind, or a neutral one
    (a matter; never for a thank-you or a suggestion) that shares the most words with it; else
    the kind's generic title."""
    titles = [(t, wording_class(t), _bigrams(t)) for t in wording.titles]
    out = []
    for content in wording.contents:
        kind = wording_class(content)
        words = _bigrams(content)
        scored = [
            (len(words & tw) + (0.5 if tk == kind else 0.0), t)
            for t, tk, tw in titles
            if tk == kind or (tk == "matter" and kind not in ("praise", "suggest"))
        ]
        best = max((s for s, _ in scored), default=0.0)
        chosen = tuple(t for s, t in scored if s == best and s >= 1)
        out.append(Text(content, chosen or fallback.get(kind, ("反映{name}问题",)), kind))
    return out


class TextBank:
    def __init__(self, data: dict[str, Any]) -> None:
        self.places: list[str] = list(data.get("places") or ["和平小区"])
        self.roads: list[str] = list(data.get("roads") or ["人民路"])
        self.companies: list[str] = list(data.get("companies") or ["某公司"])
        generic = {k: _wording(v) for k, v in GENERIC_BY_TYPE.items()}
        own = {k: _wording(v) for k, v in (data.get("by_type") or {}).items()}
        self.by_type = {k: w for k, w in {**generic, **own}.items() if w is not None}
        self.entries: dict[str, dict[str, Any]] = {
            str(k): v for k, v in data.items() if isinstance(v, dict) and str(k)[:1].isdigit()
        }
        # Categories that exist only in some districts (farmland, villages): code prefix ->
        # district code -> weight; a place's usual weight is multiplied by it (0: never there).
        self.place_rules: list[tuple[tuple[str, ...], dict[str, float]]] = [
            (tuple(str(c) for c in rule["categories"]),
             {str(k): float(v) for k, v in rule["districts"].items()})
            for rule in data.get("place_rules") or []
        ]  # fmt: skip
        self.volume = {str(k): float(v) for k, v in (data.get("volume") or {}).items()}

    @classmethod
    def from_pack(cls, pack_dir: Path) -> TextBank:
        path = pack_dir / "demo_texts.yaml"
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) if path.exists() else {}
        return cls(data or {})

    def districts_for(self, code: str) -> dict[str, float]:
        best: tuple[int, dict[str, float]] = (0, {})
        for prefixes, districts in self.place_rules:
            for p in prefixes:
                if code.startswith(p) and len(p) > best[0]:
                    best = (len(p), districts)
        return best[1]

    def for_category(self, code: str, name: str, keywords: list[str]) -> CategoryTexts:
        """The texts of a category: its own entry, else its parent's, else built from its name."""
        entry = self.entries.get(code) or self.entries.get(code[:-2]) or self.entries.get(code[:2])
        own = entry if entry and code in self.entries else None
        if entry is None:
            words = "、".join(keywords[:3]) or name
            entry = {
                "titles": [f"反映{name}问题", f"{{community}}{name}问题"],
                "contents": [
                    f"我是{{district}}{{street}}{{community}}的居民，想反映{name}方面的问题（{words}），"
                    "已经持续{days}天了，希望有关部门尽快处理。"
                ],
            }
        wording = _wording(entry)
        assert wording is not None
        by_type = {k: w for k, v in (entry.get("by_type") or {}).items() if (w := _wording(v))}
        src = own or entry
        fallback = {
            "danger": (f"{{community}}{name}险情",),
            "praise": ("表扬{street}工作人员",),
            "consult": (f"咨询{name}相关问题",),
            "suggest": (f"关于{name}的建议",),
            "matter": (f"反映{name}问题",),
        }
        texts = pair(wording, fallback)
        fitting = {
            t: tuple(x for x in texts if t in CLASS_TYPES[x.kind])
            for t in ("consult", "complain", "help", "suggest", "report", "praise")
        }
        volume = self.volume.get(code[:4], self.volume.get(code[:2], 1.0))
        return CategoryTexts(
            wording=wording,
            by_type=by_type,
            request_types={str(k): float(v) for k, v in (src.get("request_types") or {}).items()},
            season={str(k): float(v) for k, v in (src.get("season") or {}).items()},
            weight=float(src.get("weight", 1.0)) * volume,
            name=name,
            fitting={t: x for t, x in fitting.items() if x},
            districts=self.districts_for(code),
        )

    def text_for(
        self, texts: CategoryTexts, request_type: str, rng: random.Random, *, urgent: bool = False
    ) -> tuple[str, str, str, bool]:
        """(title, content, request type, urgent): a content whose wording fits the type (the
        category's own for that type, else one of its contents that fits, else the generic
        wording of the type). An urgent category's text is a danger or a matter, a help."""
        if urgent and request_type not in ("help", "report", "complain"):
            request_type = "help"
        own = texts.by_type.get(request_type)
        if own is not None:
            content = _one(rng, own.contents)
            return _one(rng, own.titles), content, request_type, wording_class(content) == "danger"
        fits = texts.fitting.get(request_type, ())
        if urgent:
            fits = tuple(t for t in fits if t.urgent) or fits
        if fits:
            text = _one(rng, fits)
            return _one(rng, text.titles), text.content, request_type, text.urgent
        generic = self.by_type.get(request_type)
        if generic is not None:
            return _one(rng, generic.titles), _one(rng, generic.contents), request_type, False
        # No wording for this type at all: take a content and a type its wording makes.
        everything = [t for fit in texts.fitting.values() for t in fit]
        text = _one(rng, everything)
        types = CLASS_TYPES[text.kind]
        request_type = request_type if request_type in types else types[0]
        return _one(rng, text.titles), text.content, request_type, text.urgent

    def fill(
        self, texts: CategoryTexts, request_type: str, place: PlaceLike, rng: random.Random,
        *, urgent: bool = False,
    ) -> Filled:  # fmt: skip
        """One ticket's wording and address; its request type may change to one its wording
        makes, and a danger makes it urgent."""
        title, content, request_type, danger = self.text_for(
            texts, request_type, rng, urgent=urgent
        )
        community = _one(rng, self.places)
        road = _one(rng, self.roads)
        n = 2 + int(rng.random() * 29)
        slots = {
            "street": place.street_name,
            "district": place.district_name,
            "community": community,
            "road": road,
            "place": _one(
                rng, (community, f"{road}与{_one(rng, self.roads)}交叉口", f"{road}公交站")
            ),
            "n": n,
            "days": _one(rng, (2, 3, 5, 7, 10, 15, 20, 30, 60)),
            "company": _one(rng, self.companies),
            "name": texts.name,
        }
        title = title.format_map(slots)
        content = content.format_map(slots)
        if rng.random() < 0.7:
            address = f"{place.district_name}{place.street_name}{community}{n}号楼"
        else:
            address = f"{place.district_name}{road}{1 + int(rng.random() * 300)}号"
        return Filled(title[:200], content, address, request_type, danger or urgent)
