"""Demo ticket wording from a pack's `demo_texts.yaml` (format: docs/citypack.md)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

# libyaml when present: the demo texts are large enough for the pure-Python parser to show.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


class PlaceLike(Protocol):
    district_name: str
    street_name: str


def _one(rng: random.Random, seq: Any) -> Any:
    return seq[int(rng.random() * len(seq))]


def _wording(entry: dict[str, Any] | None) -> Wording | None:
    if not entry or not entry.get("titles") or not entry.get("contents"):
        return None
    return Wording(tuple(entry["titles"]), tuple(entry["contents"]))


class TextBank:
    def __init__(self, data: dict[str, Any]) -> None:
        self.places: list[str] = list(data.get("places") or ["和平小区"])
        self.roads: list[str] = list(data.get("roads") or ["人民路"])
        self.companies: list[str] = list(data.get("companies") or ["某公司"])
        self.by_type = {
            k: w for k, v in (data.get("by_type") or {}).items() if (w := _wording(v)) is not None
        }
        self.entries: dict[str, dict[str, Any]] = {
            str(k): v for k, v in data.items() if isinstance(v, dict) and str(k)[:1].isdigit()
        }

    @classmethod
    def from_pack(cls, pack_dir: Path) -> TextBank:
        path = pack_dir / "demo_texts.yaml"
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) if path.exists() else {}
        return cls(data or {})

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
        return CategoryTexts(
            wording=wording,
            by_type=by_type,
            request_types={str(k): float(v) for k, v in (src.get("request_types") or {}).items()},
            season={str(k): float(v) for k, v in (src.get("season") or {}).items()},
            weight=float(src.get("weight", 1.0)),
        )

    def fill(
        self, texts: CategoryTexts, request_type: str, place: PlaceLike, rng: random.Random
    ) -> tuple[str, str, str]:
        """(title, content, address) for one ticket."""
        wording = texts.by_type.get(request_type) or self.by_type.get(request_type) or texts.wording
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
        }
        title = _one(rng, wording.titles).format_map(slots)
        content = _one(rng, wording.contents).format_map(slots)
        if rng.random() < 0.7:
            address = f"{place.district_name}{place.street_name}{community}{n}号楼"
        else:
            address = f"{place.district_name}{road}{1 + int(rng.random() * 300)}号"
        return title[:200], content, address
