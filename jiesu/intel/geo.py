"""Coordinates → division (SPEC §8): datum conversion and point-in-boundary lookup. Pure.

Maps and phones in mainland China report positions in GCJ-02 (the "Mars" datum every licensed
map must use: Amap, Tencent, Baidu before its own BD-09 offset), GPS receivers in WGS-84; the
two differ by some 100–700 m in Beijing, enough to put a point in the wrong street. Boundary
files say which datum they are in, and a point is converted to the boundaries' datum before the
lookup, never the other way round (a polygon converted vertex by vertex would gain error at
every vertex).

- `wgs84_to_gcj02` is the published forward formula (Krasovsky ellipsoid plus the official
  sinusoidal offsets); outside China's bounding box GCJ-02 equals WGS-84.
- `gcj02_to_wgs84` has no closed form: it inverts the forward formula by fixed-point iteration.
  The offset changes by less than 1e-5 of its size per metre moved, so each round divides the
  error by about 10^5: two rounds already reach 1 mm, and the loop stops below 1e-10 degrees
  (about 0.01 mm). The round trip `wgs84_to_gcj02(*gcj02_to_wgs84(p))` is back within 1e-9
  degrees (< 0.1 mm) everywhere in China; tests/test_intel_address.py checks < 1 m on a grid.
- `Boundaries` holds named polygons (districts, streets, or both) in an STRtree with prepared
  geometries: a lookup is one tree query and a few prepared point-in-polygon tests (~10 µs).
  Where areas nest (a street inside its district), the smallest area containing the point
  wins.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import shapely
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

Datum = Literal["gcj02", "wgs84"]

# Krasovsky 1940 ellipsoid, as the GCJ-02 formula uses it.
_A = 6378245.0
_EE = 0.00669342162296594323
# Metres per degree of latitude (and of longitude at the equator), for distances near a border.
METRES_PER_DEGREE = 111_320.0


def out_of_china(lng: float, lat: float) -> bool:
    """The rectangle outside which GCJ-02 applies no offset (the published bounding box)."""
    return not (72.004 <= lng <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _offset_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _offset_lng(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lng: float, lat: float) -> tuple[float, float]:
    """A WGS-84 (GPS) position in GCJ-02, as Chinese maps show it."""
    if out_of_china(lng, lat):
        return lng, lat
    dlat = _offset_lat(lng - 105.0, lat - 35.0)
    dlng = _offset_lng(lng - 105.0, lat - 35.0)
    radlat = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(radlat) ** 2
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * math.pi)
    dlng = (dlng * 180.0) / (_A / sqrtmagic * math.cos(radlat) * math.pi)
    return lng + dlng, lat + dlat


def gcj02_to_wgs84(lng: float, lat: float) -> tuple[float, float]:
    """The WGS-84 position that GCJ-02 shows at (lng, lat): the forward formula inverted by
    fixed-point iteration (error below 1e-9 degrees; see the module docstring)."""
    if out_of_china(lng, lat):
        return lng, lat
    wlng, wlat = lng, lat
    for _ in range(12):
        glng, glat = wgs84_to_gcj02(wlng, wlat)
        dlng, dlat = glng - lng, glat - lat
        if abs(dlng) < 1e-10 and abs(dlat) < 1e-10:
            break
        wlng, wlat = wlng - dlng, wlat - dlat
    return wlng, wlat


def convert(lng: float, lat: float, source: Datum, target: Datum) -> tuple[float, float]:
    if source == target:
        return lng, lat
    if source == "wgs84":
        return wgs84_to_gcj02(lng, lat)
    return gcj02_to_wgs84(lng, lat)


def distance_m(lng1: float, lat1: float, lng2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine, mean Earth radius): good to 0.5% at city
    scale, which is all the tests and the border margin need."""
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


@dataclass(frozen=True)
class Hit:
    """The area a point lies in and how far it is from that area's edge (metres, roughly):
    close to a border a coarse boundary file may be wrong, so callers lower their trust."""

    code: str
    border_m: float


class Boundaries:
    """Named areas (code → polygon) in one datum, indexed for point lookups."""

    def __init__(self, areas: Iterable[tuple[str, BaseGeometry]], *, datum: Datum = "gcj02"):
        pairs = [
            (str(code), geom) for code, geom in areas if geom is not None and not geom.is_empty
        ]
        self.datum: Datum = datum
        self.codes: list[str] = [code for code, _ in pairs]
        self._geoms: list[BaseGeometry] = [geom for _, geom in pairs]
        self._areas = [geom.area for geom in self._geoms]
        for geom in self._geoms:
            shapely.prepare(geom)
        self._tree = shapely.STRtree(self._geoms)

    def __len__(self) -> int:
        return len(self.codes)

    @classmethod
    def from_geojson(
        cls,
        path: str | Path,
        *,
        datum: Datum = "gcj02",
        code_property: str | None = None,
    ) -> Boundaries:
        """Read a GeoJSON FeatureCollection whose features carry the division code in
        `code_property` (default: the first of `code`, `adcode`, `id` that a feature has)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(_features(data, code_property), datum=datum)

    def locate(self, lng: float, lat: float, *, datum: Datum = "gcj02") -> Hit | None:
        """The smallest area containing the point (given in `datum`), or None outside all."""
        x, y = convert(lng, lat, datum, self.datum)
        point = Point(x, y)
        best: int | None = None
        for i in self._tree.query(point, predicate="intersects"):
            if best is None or self._areas[int(i)] < self._areas[best]:
                best = int(i)
        if best is None:
            return None
        geom = self._geoms[best]
        edge_deg = float(shapely.distance(geom.boundary, point))
        # Degrees to metres: the longitude degree shrinks with cos(lat); take the smaller scale
        # so the margin errs on the side of "near the border".
        return Hit(self.codes[best], edge_deg * METRES_PER_DEGREE * math.cos(math.radians(y)))


def _features(data: Any, code_property: str | None) -> Sequence[tuple[str, BaseGeometry]]:
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise ValueError("boundaries must be a GeoJSON FeatureCollection")
    areas: list[tuple[str, BaseGeometry]] = []
    for i, feature in enumerate(data.get("features") or [], 1):
        props = feature.get("properties") or {}
        keys = (code_property,) if code_property else ("code", "adcode", "id")
        code = next((props[k] for k in keys if props.get(k) not in (None, "")), None)
        if code is None:
            code = feature.get("id")
        if code is None or feature.get("geometry") is None:
            raise ValueError(f"boundaries feature #{i} has no code or no geometry")
        areas.append((str(code), shape(feature["geometry"])))
    return areas
