#!/usr/bin/env python3
"""Intake intelligence (issue 5): every figure, each part selectable with `--only`.

Parts (`--only NAME[,NAME]`; default: all):

    classifier    category classifier: train on teddycup2020/train_segmented.csv (`tokens` →
                  `一级标签`), time it; evaluate on dev.csv (`留言主题,留言详情`): macro-F1,
                  accuracy, per-class F1; one text at a time p50/p99 (dev texts cycled), batch
                  throughput (`predict` on ≥ 5,000 texts).
                  Goals: macro-F1 ≥ 0.90, p99 ≤ 10 ms, ≥ 1,000 texts/s, training ≤ 120 s.
    request_type  request-type classifier: 5-fold cross-validation on
                  fuzhou12345/river_requests.csv (`title,content` → `request_type`): per-fold
                  macro-F1, mean, pooled per-class F1, the rare classes. No goal (a figure).
    address       text → street on tests/data/beijing_addresses.csv with the Beijing pack's
                  gazetteer: accuracy to street level ((street, district) exactly as labelled)
                  and throughput (single thread, median of 5 passes over the set × 30); point →
                  district with geo/beijing_districts_gcj02.geojson (`resolve_point`, µs).
                  Goals: ≥ 95 %, ≥ 10,000 addresses/s.
    urgency       `urgency.evaluate_csv(tests/data/urgency_texts.csv)`: precision/recall on the
                  test split, on batch 4 (held out) and on all rows; texts/s (intake-length
                  texts, and real letters from teddycup2020/hot_messages.csv).
    duplicates    `duplicates.evaluate_hot_messages` (7-day window, the default of the city
                  setting, and 90 days): exact and near precision/recall; `candidates` for one
                  new doc against 500 recent (median, p95 ms; cold and warm text cache);
                  `batch_groups` on 10,000 docs (seconds).
    intake        `POST /api/v1/tickets` with --tickets tickets in the database, per backend:
                  fresh database, Beijing pack, `generate()` (chunks of days, progress on
                  stderr), a category model trained on the demo history registered and active,
                  then a real uvicorn process (its own GIL) and one keep-alive client, serial
                  requests after a warm-up; median/p95/p99 and a /healthz p95 baseline of the
                  same run; every answer must carry `suggestions` with `place` and `category`.
                  Goal: ≤ 50 ms p95. `--keep` keeps the database and prints its URL;
                  `--url URL` measures such a database again without generating it.

Timed parts are measured --runs times; a summary is the median over runs (of the p95 where the
figure is a p95). Shared data is read from --data (default ../shared/data, see its README); a
part whose file is absent is skipped with the reason. The last line of stdout is JSON.

    .venv/bin/python bench/intel.py --only classifier,request_type,address,urgency,duplicates
    .venv/bin/python bench/intel.py --only intake --tickets 100000 --backend both --runs 2
    .venv/bin/python bench/intel.py --only intake --tickets 1000000 --backend postgresql --runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("JIESU_ARGON2_PROFILE", "cheapest")  # before anything imports jiesu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("JIESU_SHARED_DATA", ROOT.parent / "shared" / "data"))
TESTS_DATA = ROOT / "tests" / "data"
PASSWORD = "demo12345"
PARTS = ("classifier", "request_type", "address", "urgency", "duplicates", "intake")


class Skip(Exception):
    """A part that cannot run here (a missing file); the message says which and why."""


def need(path: Path) -> Path:
    if not path.is_file():
        raise Skip(f"{path} is absent (shared data: see ../shared/data/README.md)")
    return path


def pct(xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (as bench/console_pages.py)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def goal(ok: bool) -> str:
    return "holds" if ok else "NOT MET"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- 1. the category classifier ----------------------------------------------------------------


def part_classifier(args: argparse.Namespace) -> dict[str, Any]:
    from jiesu.intel import classify
    from jiesu.intel.datasets import read_labelled

    train_csv = need(args.data / "teddycup2020" / "train_segmented.csv")
    dev_csv = need(args.data / "teddycup2020" / "dev.csv")
    train = read_labelled(train_csv, ["tokens"], "一级标签")
    dev = read_labelled(dev_csv, ["留言主题", "留言详情"], "一级标签")
    log(f"[classifier] training on {len(train.texts):,} rows …")
    t0 = time.perf_counter()
    model = classify.train(train.texts, train.labels, kind="category")
    train_s = time.perf_counter() - t0
    ev = classify.evaluate(model, dev.texts, dev.labels)
    singles = max(1000, args.texts)
    batch_n = max(5000, args.batch)
    texts = [dev.texts[i % len(dev.texts)] for i in range(max(singles, batch_n))]
    # Wall time is the figure; CPU time of this process beside it, since the machine is shared.
    p50s, p99s, cpu_p99s, rates, cpu_rates = [], [], [], [], []
    for run in range(args.runs):
        log(f"[classifier] latency run {run + 1}/{args.runs} …")
        model.predict_one(texts[0])
        lat, cpu = [], []
        for t in texts[:singles]:
            s, c = time.perf_counter(), time.process_time()
            model.predict_one(t)
            lat.append((time.perf_counter() - s) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        p50s.append(pct(lat, 50))
        p99s.append(pct(lat, 99))
        cpu_p99s.append(pct(cpu, 99))
        s, c = time.perf_counter(), time.process_time()
        model.predict(texts[:batch_n])
        rates.append(batch_n / (time.perf_counter() - s))
        cpu_rates.append(batch_n / max(1e-9, time.process_time() - c))
    out = {
        "train_rows": len(train.texts), "dev_rows": len(dev.texts),
        "train_s": round(train_s, 1),
        "macro_f1": ev["macro_f1"], "accuracy": ev["accuracy"],
        "per_class_f1": {k: v["f1"] for k, v in ev["per_class"].items()},
        "per_class_support": {k: v["support"] for k, v in ev["per_class"].items()},
        "single_texts": singles, "single_p50_ms": round(statistics.median(p50s), 2),
        "single_p99_ms": round(statistics.median(p99s), 2),
        "single_p99_runs_ms": [round(x, 2) for x in p99s],
        "single_cpu_p99_ms": round(statistics.median(cpu_p99s), 2),
        "dev_chars_mean": round(statistics.mean(map(len, dev.texts))),
        "batch_texts": batch_n, "batch_per_s": round(statistics.median(rates)),
        "batch_cpu_per_s": round(statistics.median(cpu_rates)),
        "batch_runs_per_s": [round(x) for x in rates],
    }  # fmt: skip
    out["goals"] = {
        "macro_f1>=0.90": out["macro_f1"] >= 0.90,
        "p99<=10ms": out["single_p99_ms"] <= 10,
        "batch>=1000/s": out["batch_per_s"] >= 1000,
        "train<=120s": train_s <= 120,
    }
    return out


def print_classifier(r: dict[str, Any]) -> None:
    g = r["goals"]
    print(f"\nclassifier (category): trained on {r['train_rows']:,} segmented rows, "
          f"evaluated on {r['dev_rows']} raw dev rows")  # fmt: skip
    print(f"{'figure':24s} {'measured':>12s}  {'goal':>10s}")
    print(
        f"{'macro-F1 (dev)':24s} {r['macro_f1']:12.4f}  {'≥ 0.90':>10s}  {goal(g['macro_f1>=0.90'])}"
    )
    print(f"{'accuracy (dev)':24s} {r['accuracy']:12.4f}")
    print(f"{'single p50 (ms)':24s} {r['single_p50_ms']:12.2f}")
    print(f"{'single p99 (ms)':24s} {r['single_p99_ms']:12.2f}  {'≤ 10':>10s}  {goal(g['p99<=10ms'])}"
          f"   runs: {' · '.join(map(str, r['single_p99_runs_ms']))}")  # fmt: skip
    print(f"{'batch (texts/s)':24s} {r['batch_per_s']:12,d}  {'≥ 1,000':>10s}  "
          f"{goal(g['batch>=1000/s'])}   runs: {' · '.join(f'{x:,}' for x in r['batch_runs_per_s'])}")  # fmt: skip
    print(f"{'(CPU time) p99 / batch':24s} {r['single_cpu_p99_ms']:9.2f} ms / {r['batch_cpu_per_s']:,d} texts/s "
          f"(dev texts: {r['dev_chars_mean']} characters on average)")  # fmt: skip
    print(f"{'training (s)':24s} {r['train_s']:12.1f}  {'≤ 120':>10s}  {goal(g['train<=120s'])}")
    print("per-class F1 (support): " + ", ".join(
        f"{k} {v:.3f} ({r['per_class_support'][k]})" for k, v in r["per_class_f1"].items()))  # fmt: skip


# ---- 2. the request-type classifier --------------------------------------------------------------


def part_request_type(args: argparse.Namespace) -> dict[str, Any]:
    from jiesu.intel import classify
    from jiesu.intel.datasets import read_labelled

    path = need(args.data / "fuzhou12345" / "river_requests.csv")
    data = read_labelled(path, ["title", "content"], "request_type")
    log(f"[request_type] 5-fold cross-validation on {len(data.texts):,} rows …")
    t0 = time.perf_counter()
    cv = classify.cross_validate(data.texts, data.labels, folds=5, kind="request_type")
    pooled = cv["pooled"]
    return {
        "rows": cv["rows"], "dropped": data.dropped, "seconds": round(time.perf_counter() - t0, 1),
        "fold_macro_f1": cv["fold_macro_f1"], "mean_macro_f1": cv["mean_macro_f1"],
        "std_macro_f1": cv["std_macro_f1"], "pooled_macro_f1": pooled["macro_f1"],
        "pooled_accuracy": pooled["accuracy"],
        "pooled_per_class": {k: {"f1": v["f1"], "precision": v["precision"],
                                 "recall": v["recall"], "support": v["support"]}
                             for k, v in pooled["per_class"].items()},
        "class_counts": cv["class_counts"], "rare": cv["rare"],
    }  # fmt: skip


def print_request_type(r: dict[str, Any]) -> None:
    print(f"\nrequest type: 5-fold CV on {r['rows']:,} Fuzhou river requests ({r['seconds']} s)")
    print("macro-F1 per fold: " + " · ".join(f"{x:.3f}" for x in r["fold_macro_f1"])
          + f"   mean {r['mean_macro_f1']:.3f} ± {r['std_macro_f1']:.3f}; pooled "
          f"{r['pooled_macro_f1']:.3f}, accuracy {r['pooled_accuracy']:.3f}")  # fmt: skip
    print(f"{'class':8s} {'rows':>5s} {'P':>6s} {'R':>6s} {'F1':>6s}")
    for k, v in sorted(r["pooled_per_class"].items(), key=lambda kv: -kv[1]["support"]):
        print(f"{k:8s} {v['support']:5d} {v['precision']:6.3f} {v['recall']:6.3f} {v['f1']:6.3f}")
    print(f"rare classes (< 5 rows): {r['rare'] or 'none'}")


# ---- 3. addresses --------------------------------------------------------------------------------


def _points_in(geom: Any, n: int, rng: random.Random) -> list[tuple[float, float]]:
    from shapely.geometry import Point

    minx, miny, maxx, maxy = geom.bounds
    out: list[tuple[float, float]] = []
    while len(out) < n:
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if geom.contains(Point(x, y)):
            out.append((x, y))
    return out


def part_address(args: argparse.Namespace) -> dict[str, Any]:
    import csv

    from jiesu.citypack.parse import read_pack
    from jiesu.demo.generate import DEFAULT_PACK
    from jiesu.intel.address import Gazetteer
    from jiesu.intel.geo import Boundaries

    pack = read_pack(DEFAULT_PACK)
    t0 = time.perf_counter()
    gaz = Gazetteer.from_pack(pack)
    build_s = time.perf_counter() - t0
    with need(TESTS_DATA / "beijing_addresses.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    right = district_right = 0
    misses = []
    for row in rows:
        r = gaz.resolve(row["text"])
        if (r.street or "", r.district or "") == (row["street"], row["district"]):
            right += 1
        else:
            misses.append(f"{row['text']} → {r.street_name or r.district_name or '—'}")
        district_right += (r.district or "") == row["district"]
    texts = [row["text"] for row in rows] * 30
    rates, cpu_rates = [], []
    for _ in range(5):
        w, c = time.perf_counter(), time.process_time()
        for t in texts:
            gaz.resolve(t)
        rates.append(len(texts) / (time.perf_counter() - w))
        cpu_rates.append(len(texts) / max(1e-9, time.process_time() - c))
    out: dict[str, Any] = {
        "rows": len(rows), "surfaces": gaz.size, "build_s": round(build_s, 2),
        "street_accuracy": round(right / len(rows), 4),
        "district_accuracy": round(district_right / len(rows), 4),
        "misses": misses, "pass_texts": len(texts),
        "per_s": round(statistics.median(rates)), "per_s_runs": [round(x) for x in rates],
        "per_s_cpu": round(statistics.median(cpu_rates)),
    }  # fmt: skip
    out["goals"] = {"accuracy>=0.95": out["street_accuracy"] >= 0.95,
                    "per_s>=10000": out["per_s"] >= 10_000}  # fmt: skip
    geo = args.data / "geo" / "beijing_districts_gcj02.geojson"
    if not geo.is_file():
        out["point"] = {"skipped": f"{geo} is absent"}
        return out
    bounds = Boundaries.from_geojson(geo)
    bounded = Gazetteer.from_pack(pack, boundaries=bounds)
    rng = random.Random(args.seed)
    points = [(code, p) for code, geom in zip(bounds.codes, bounds._geoms, strict=True)
              for p in _points_in(geom, 125, rng)]  # fmt: skip
    rng.shuffle(points)
    hits, lat = 0, []
    for _, (x, y) in points[:100]:
        bounded.resolve_point(x, y)  # warm-up
    for _ in range(args.runs):
        for code, (x, y) in points:
            s = time.perf_counter()
            r = bounded.resolve_point(x, y)
            lat.append((time.perf_counter() - s) * 1e6)
            hits += r.district == code
    wgs = []
    from jiesu.intel.geo import gcj02_to_wgs84

    wgs_pts = [gcj02_to_wgs84(x, y) for _, (x, y) in points]
    for x, y in wgs_pts:
        s = time.perf_counter()
        bounded.resolve_point(x, y, gcj02=False)
        wgs.append((time.perf_counter() - s) * 1e6)
    out["point"] = {
        "areas": len(bounds), "points": len(points),
        "right_district": round(hits / (len(points) * args.runs), 4),
        "median_us": round(statistics.median(lat), 1), "p95_us": round(pct(lat, 95), 1),
        "wgs84_median_us": round(statistics.median(wgs), 1),
    }  # fmt: skip
    return out


def print_address(r: dict[str, Any]) -> None:
    g = r["goals"]
    print(f"\naddress: {r['rows']} labelled texts, gazetteer of {r['surfaces']:,} surfaces "
          f"(built in {r['build_s']} s)")  # fmt: skip
    print(f"{'figure':28s} {'measured':>10s}  {'goal':>10s}")
    print(f"{'street-level accuracy':28s} {r['street_accuracy']:10.1%}  {'≥ 95 %':>10s}  "
          f"{goal(g['accuracy>=0.95'])}")  # fmt: skip
    print(f"{'district accuracy':28s} {r['district_accuracy']:10.1%}")
    print(f"{'addresses/s (wall)':28s} {r['per_s']:10,d}  {'≥ 10,000':>10s}  "
          f"{goal(g['per_s>=10000'])}   runs: {' · '.join(f'{x:,}' for x in r['per_s_runs'])}")  # fmt: skip
    print(f"{'addresses/s (CPU time)':28s} {r['per_s_cpu']:10,d}")
    p = r.get("point", {})
    if "skipped" in p:
        print(f"point lookup: skipped — {p['skipped']}")
    else:
        print(f"point → district ({p['areas']} areas, {p['points']} random points inside them): "
              f"median {p['median_us']} µs, p95 {p['p95_us']} µs (WGS-84 input "
              f"{p['wgs84_median_us']} µs); right district {p['right_district']:.1%}")  # fmt: skip
    if r["misses"]:
        print(f"misses ({len(r['misses'])}): " + "; ".join(r["misses"][:12])
              + (" …" if len(r["misses"]) > 12 else ""))  # fmt: skip


# ---- 4. urgency ----------------------------------------------------------------------------------


def part_urgency(args: argparse.Namespace) -> dict[str, Any]:
    import csv

    from jiesu.intel import urgency

    path = need(TESTS_DATA / "urgency_texts.csv")
    out: dict[str, Any] = {}
    for name, kw in (("test", {"split": "test"}), ("batch4", {"batch": "4"}), ("all", {})):
        s = urgency.evaluate_csv(path, **kw)
        out[name] = {"n": s["n"], "precision": round(s["precision"], 3),
                     "recall": round(s["recall"], 3), "f1": round(s["f1"], 3),
                     "confusion": s["confusion"],
                     "transfer_accuracy": round(s["transfer_accuracy"], 3)}  # fmt: skip
    with path.open(encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    out["per_s"] = _rate(urgency.detect, texts * 20, args.runs)
    out["chars_mean"] = round(statistics.mean(map(len, texts)))
    hot = args.data / "teddycup2020" / "hot_messages.csv"
    if hot.is_file():
        with hot.open(encoding="utf-8", newline="") as f:
            letters = [f"{r['留言主题']}\n{r['留言详情']}" for r in csv.DictReader(f)]
        out["letters_per_s"] = _rate(urgency.detect, letters, args.runs)
        out["letters_chars_mean"] = round(statistics.mean(map(len, letters)))
        out["letters_alarms"] = sum(urgency.detect(t).level != "normal" for t in letters)
        out["letters"] = len(letters)
    return out


def _rate(fn: Callable[[str], Any], texts: list[str], runs: int) -> int:
    rates = []
    for _ in range(max(1, runs)):
        s = time.perf_counter()
        for t in texts:
            fn(t)
        rates.append(len(texts) / (time.perf_counter() - s))
    return round(statistics.median(rates))


def print_urgency(r: dict[str, Any]) -> None:
    print("\nurgency (tests/data/urgency_texts.csv)")
    print(f"{'rows':22s} {'n':>4s} {'P':>6s} {'R':>6s} {'F1':>6s}  tp/fp/fn/tn   transfer")
    for name, label in (
        ("test", "test split"),
        ("batch4", "batch 4 (held out)"),
        ("all", "all rows"),
    ):
        s = r[name]
        c = s["confusion"]
        print(f"{label:22s} {s['n']:4d} {s['precision']:6.3f} {s['recall']:6.3f} {s['f1']:6.3f}  "
              f"{c['tp']}/{c['fp']}/{c['fn']}/{c['tn']}   {s['transfer_accuracy']:.3f}")  # fmt: skip
    print(f"speed: {r['per_s']:,} texts/s (intake texts, {r['chars_mean']} characters on average)")
    if "letters_per_s" in r:
        print(f"       {r['letters_per_s']:,} texts/s on {r['letters']:,} real letters "
              f"({r['letters_chars_mean']} characters on average; {r['letters_alarms']} alarms)")  # fmt: skip


# ---- 5. duplicates -------------------------------------------------------------------------------


def _raw_messages(args: argparse.Namespace) -> list[str]:
    """Every raw message text of the shared Teddy Cup files (subject, a line break, detail)."""
    import csv

    texts = []
    for name in ("hot_messages.csv", "messages_replies.csv", "dev.csv"):
        path = args.data / "teddycup2020" / name
        if path.is_file():
            with path.open(encoding="utf-8-sig", newline="") as f:
                texts += [
                    f"{r['留言主题'].strip()}\n{r['留言详情'].strip()}" for r in csv.DictReader(f)
                ]
    return texts


def part_duplicates(args: argparse.Namespace) -> dict[str, Any]:
    from jiesu.intel import duplicates

    hot = need(args.data / "teddycup2020" / "hot_messages.csv")
    labels = need(TESTS_DATA / "hot_messages_duplicates.csv")
    out: dict[str, Any] = {}
    for days in (7, 90):
        log(f"[duplicates] evaluate_hot_messages, {days}-day window …")
        t0 = time.perf_counter()
        e = duplicates.evaluate_hot_messages(hot, labels, window=timedelta(days=days))
        out[f"window_{days}"] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "exact": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in e["exact"].items()},
            "near": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in e["near"].items()},
            "groups": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in e["groups"].items()},
            "unjudged_near_pairs": len(e["unjudged_near_pairs"]),
        }  # fmt: skip
    # candidates: one new doc against 500 recent ones, all inside the window and without place
    # or category fields, so that every pair reaches the text comparison (the upper bound).
    texts = _raw_messages(args)
    rng = random.Random(args.seed)
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    pool = [duplicates.Doc(id=i, text=t, created_at=now - timedelta(minutes=rng.randrange(1, 6 * 1440)))
            for i, t in enumerate(texts)]  # fmt: skip
    trials = 200
    cold, warm = [], []
    for k in range(trials):
        recent = rng.sample(pool, 500)
        new = duplicates.Doc(id=-1, text=rng.choice(texts) + f"\n{k}", created_at=now)
        duplicates._text.cache_clear()
        s = time.perf_counter()
        duplicates.candidates(new, recent)
        cold.append((time.perf_counter() - s) * 1000)
        new = duplicates.Doc(id=-2, text=rng.choice(texts) + f"\n#{k}", created_at=now)
        s = time.perf_counter()
        duplicates.candidates(new, recent)
        warm.append((time.perf_counter() - s) * 1000)
    out["candidates_500"] = {
        "trials": trials,
        "cold_median_ms": round(statistics.median(cold), 2), "cold_p95_ms": round(pct(cold, 95), 2),
        "warm_median_ms": round(statistics.median(warm), 2), "warm_p95_ms": round(pct(warm, 95), 2),
    }  # fmt: skip
    # batch_groups: 10,000 docs within 8 days (a day's pass plus its window): the raw messages,
    # topped up with re-posts (a copy with a line added) of random ones.
    docs = []
    for i in range(10_000):
        t = texts[i] if i < len(texts) else rng.choice(texts) + f"\n补充：第{i}次反映"
        docs.append(
            duplicates.Doc(
                id=i, text=t, created_at=now - timedelta(minutes=rng.randrange(8 * 1440))
            )
        )
    secs, groups = [], 0
    for run in range(args.runs):
        duplicates._text.cache_clear()
        log(f"[duplicates] batch_groups on 10,000 docs, run {run + 1}/{args.runs} …")
        s = time.perf_counter()
        groups = len(duplicates.batch_groups(docs))
        secs.append(time.perf_counter() - s)
    out["batch_10000"] = {"docs": len(docs), "distinct_raw_texts": len(texts), "groups": groups,
                          "seconds": round(statistics.median(secs), 2),
                          "runs_s": [round(x, 2) for x in secs]}  # fmt: skip
    return out


def print_duplicates(r: dict[str, Any]) -> None:
    print("\nduplicates (hot_messages.csv, 4,326 messages; judged pairs in tests/data)")
    print(f"{'window':7s} {'exact P':>8s} {'exact R':>8s} {'near P':>7s} {'near R':>7s} "
          f"{'R same user':>11s} {'R others':>8s} {'groups P':>8s}  near predicted/judged")  # fmt: skip
    for days in (7, 90):
        w = r[f"window_{days}"]
        e, n, g = w["exact"], w["near"], w["groups"]
        print(f"{days:3d} d   {e['precision']:8.3f} {e['recall']:8.3f} {n['precision']:7.3f} "
              f"{n['recall']:7.3f} {n['recall_same_user']:11.3f} {n['recall_other_users']:8.3f} "
              f"{g['precision']:8.3f}  {n['predicted']}/{n['judged']} "
              f"(exact pairs {e['truth']})")  # fmt: skip
    c = r["candidates_500"]
    print(f"candidates, 1 new vs 500 recent ({c['trials']} trials): cold cache median "
          f"{c['cold_median_ms']} ms, p95 {c['cold_p95_ms']} ms; warm median "
          f"{c['warm_median_ms']} ms, p95 {c['warm_p95_ms']} ms")  # fmt: skip
    b = r["batch_10000"]
    print(f"batch_groups on {b['docs']:,} docs: {b['seconds']} s (runs "
          f"{' · '.join(map(str, b['runs_s']))}), {b['groups']} groups")  # fmt: skip


# ---- 6. intake through the API -------------------------------------------------------------------


def populate(url: str, tickets: int, days: int, tag: str) -> dict[str, Any]:
    """Pack + history in chunks of days (each `generate` one transaction), oldest first, so
    that progress shows; generate continues the day counters of the chunk before."""
    from sqlalchemy import text

    from jiesu.citypack.load import load_pack
    from jiesu.citypack.parse import read_pack
    from jiesu.db.engine import Database
    from jiesu.db.migrate import upgrade
    from jiesu.demo.generate import DEFAULT_PACK, generate
    from jiesu.settings import city_tz

    pack = read_pack(DEFAULT_PACK)
    if not pack.ok:
        raise SystemExit("\n".join(map(str, pack.errors)))
    upgrade(url)
    db = Database(url)
    try:
        with db.write() as s:
            load_pack(pack, db_session=s)
        per_day = max(1, round(tickets / days))
        chunk = max(1, min(days, 200_000 // per_day))
        today = datetime.now(UTC).astimezone(city_tz()).date()
        made = events = assignments = 0
        started = time.perf_counter()
        left = days
        part = 0
        while left > 0:
            k = min(chunk, left)
            left -= k
            r = generate(db, days=k, per_day=per_day, end=today - timedelta(days=left),
                         seed=12345 + part)  # fmt: skip
            part += 1
            made, events, assignments = (
                made + r.tickets,
                events + r.events,
                assignments + r.assignments,
            )
            log(f"[{tag}] {made:,} tickets written ({days - left}/{days} days, "
                f"{time.perf_counter() - started:.0f} s)")  # fmt: skip
        if db.dialect == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE"))
        return {"tickets": made, "events": events, "assignments": assignments,
                "generate_s": round(time.perf_counter() - started, 1)}  # fmt: skip
    finally:
        db.dispose()


def train_demo_model(url: str, tag: str) -> dict[str, Any]:
    """A category model trained on the demo history itself, registered and made active."""
    from jiesu.db.engine import Database
    from jiesu.intel import classify
    from jiesu.intel.service import register_model, training_rows

    db = Database(url)
    try:
        with db.read() as s:
            rows = list(training_rows("category", db_session=s, limit=20_000))
        texts, labels = [t for t, _ in rows], [lab for _, lab in rows]
        log(f"[{tag}] training the category model on {len(rows):,} demo tickets …")
        t0 = time.perf_counter()
        model = classify.train(texts, labels, kind="category")
        seconds = time.perf_counter() - t0
        with tempfile.TemporaryDirectory(prefix="jiesu-bench-model-") as tmp:
            model.save(tmp)
            with db.write() as s:
                row = register_model(Path(tmp), db_session=s, activate=True)
                version = row.version
        return {"rows": len(rows), "labels": len(set(labels)), "train_s": round(seconds, 1),
                "version": version}  # fmt: skip
    finally:
        db.dispose()


def intake_bodies(url: str, n: int, rng: random.Random) -> list[dict[str, Any]]:
    """Realistic Beijing intake: the title and content of random existing tickets, an address
    made of a random street of the pack (with or without its district) and a place."""
    import yaml
    from sqlalchemy import func, select

    from jiesu.db.engine import Database
    from jiesu.demo.generate import DEFAULT_PACK
    from jiesu.org.models import Unit
    from jiesu.tickets.models import Ticket

    places = (yaml.safe_load((DEFAULT_PACK / "demo_texts.yaml").read_text(encoding="utf-8"))
              .get("places") or ["幸福家园"])  # fmt: skip
    db = Database(url)
    try:
        with db.read() as s:
            top = s.scalar(select(func.max(Ticket.id))) or 0
            ids = rng.sample(range(1, top + 1), min(top, n * 3))
            texts = s.execute(
                select(Ticket.title, Ticket.content).where(Ticket.id.in_(ids))
            ).all()[:n]  # fmt: skip
            streets = s.execute(
                select(Unit.name, Unit.parent_id).where(Unit.kind == "street", Unit.active)
            ).all()  # fmt: skip
            districts = dict(
                s.execute(select(Unit.id, Unit.name).where(Unit.kind == "district")).all()
            )
    finally:
        db.dispose()
    bodies = []
    for i in range(n):
        title, content = texts[i % len(texts)]
        street, parent = rng.choice(streets)
        where = f"{street}{rng.choice(places)}{rng.randint(1, 30)}号楼"
        if rng.random() < 0.6:
            where = districts.get(parent, "") + where
        bodies.append({
            "channel": "phone", "title": title, "content": content, "address": where,
            "requester": {"name": rng.choice("王李张刘陈杨赵黄周吴") + "先生",
                          "phone": f"13{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"},
        })  # fmt: skip
    return bodies


def intake_backend(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import httpx
    from console_pages import Server, drop, fresh  # the console bench's server and databases
    from sqlalchemy import func, select

    from jiesu.db.engine import Database
    from jiesu.tickets.models import Ticket

    rng = random.Random(args.seed)
    tag = f"intake/{backend}"
    info: dict[str, Any] = {"backend": backend}
    if args.url:  # a database kept by an earlier run (--keep): history and model already there
        url, handle = args.url, None
        info["reused"] = True
    else:
        url, handle = fresh(backend, tmp)
    server = None
    try:
        if not args.url:
            log(f"[{tag}] generating ~{args.tickets:,} tickets over {args.days} days …")
            info.update(populate(url, args.tickets, args.days, tag))
            info["model"] = train_demo_model(url, tag)
        db = Database(url)
        with db.read() as s:
            info["tickets_in_db"] = s.scalar(select(func.count()).select_from(Ticket))
        db.dispose()
        n = args.requests
        bodies = intake_bodies(url, args.runs * n + args.warmup, rng)
        server = Server(url, tmp)
        r = httpx.post(server.base + "/api/v1/auth/token",
                       json={"username": "agent1", "password": PASSWORD})  # fmt: skip
        r.raise_for_status()
        api = httpx.Client(base_url=server.base, timeout=60,
                           headers={"Authorization": f"Bearer {r.json()['access_token']}"})  # fmt: skip
        plain = httpx.Client(base_url=server.base, timeout=60)
        checks = {"answers": 0, "place": 0, "street": 0, "category": 0, "duplicates": 0,
                  "urgency": 0, "lead": 0}  # fmt: skip

        def post(body: dict[str, Any]) -> httpx.Response:
            resp = api.post("/api/v1/tickets", json=body)
            if resp.status_code != 201:
                raise SystemExit(f"[{tag}] POST answered {resp.status_code}: {resp.text[:300]}")
            return resp

        def check(resp: httpx.Response) -> None:
            sug = resp.json().get("suggestions") or {}
            checks["answers"] += 1
            checks["place"] += bool(sug.get("place") and sug["place"].get("source") != "none")
            checks["street"] += bool((sug.get("place") or {}).get("street"))
            checks["category"] += bool(sug.get("category"))
            checks["duplicates"] += bool(sug.get("duplicates"))
            checks["urgency"] += bool(sug.get("urgency"))
            checks["lead"] += bool(sug.get("lead"))

        for b in bodies[: args.warmup]:
            check(post(b))
        post_ms: list[list[float]] = []
        health_ms: list[list[float]] = []
        cpu_ms: list[float] = []
        for run in range(args.runs):
            log(f"[{tag}] run {run + 1}/{args.runs} …")
            hs = []
            for _ in range(20):
                plain.get("/healthz")
            for _ in range(n):
                s = time.perf_counter()
                plain.get("/healthz").raise_for_status()
                hs.append((time.perf_counter() - s) * 1000)
            health_ms.append(hs)
            ps = []
            cpu = server.cpu_seconds()
            for b in bodies[args.warmup + run * n : args.warmup + (run + 1) * n]:
                s = time.perf_counter()
                resp = post(b)
                _ = resp.content
                ps.append((time.perf_counter() - s) * 1000)
                check(resp)
            cpu_ms.append(1000 * (server.cpu_seconds() - cpu) / n)
            post_ms.append(ps)
        # The last request measured and its answer's suggestions, for reading.
        info["example"] = {"request": b, "suggestions": resp.json().get("suggestions")}
        api.close()
        plain.close()
    finally:
        if server:
            server.stop()
        if args.keep or args.url:
            log(f"[{tag}] kept: {url}")
        else:
            drop(handle)
    p95s = [pct(s, 95) for s in post_ms]
    h95s = [pct(s, 95) for s in health_ms]
    info["requests"] = n
    info["post"] = {
        "median_ms": round(statistics.median(statistics.median(s) for s in post_ms), 1),
        "p95_ms": round(statistics.median(p95s), 1),
        "p99_ms": round(statistics.median(pct(s, 99) for s in post_ms), 1),
        "p95_runs_ms": [round(x, 1) for x in p95s],
        "server_cpu_ms": round(statistics.median(cpu_ms), 1),
        "x_healthz_p95": round(statistics.median(a / b for a, b in zip(p95s, h95s, strict=True)), 1),
    }  # fmt: skip
    info["healthz"] = {"median_ms": round(statistics.median(statistics.median(s) for s in health_ms), 1),
                       "p95_ms": round(statistics.median(h95s), 1),
                       "p95_runs_ms": [round(x, 1) for x in h95s]}  # fmt: skip
    info["checks"] = checks
    info["suggestions_ok"] = (
        checks["category"] == checks["answers"] and checks["place"] == checks["answers"]
    )
    info["goals"] = {"p95<=50ms": info["post"]["p95_ms"] <= 50}
    return info


def part_intake(args: argparse.Namespace) -> dict[str, Any]:
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if args.url:
        backends = ["postgresql" if args.url.startswith("postgresql") else "sqlite"]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        place = Path(tempfile.mkdtemp(prefix="jiesu-bench-")) if args.keep else Path(tmp)
        for backend in backends:
            info = intake_backend(backend, args, place)
            print_intake_one(info)
            out.append(info)
    return {"backends": out}


def print_intake_one(r: dict[str, Any]) -> None:
    c, p, h = r["checks"], r["post"], r["healthz"]
    if "model" in r:
        m = r["model"]
        print(f"\nintake, {r['backend']}: {r['tickets_in_db']:,} tickets (generated in "
              f"{r['generate_s']} s); category model on {m['rows']:,} demo tickets, "
              f"{m['labels']} labels, trained in {m['train_s']} s")  # fmt: skip
    else:
        print(f"\nintake, {r['backend']}: {r['tickets_in_db']:,} tickets (a kept database)")
    print(f"{'request':24s} {'median':>8s} {'p95':>8s} {'p99':>8s} {'p95/healthz':>11s} "
          f"{'server CPU':>10s}  p95 per run")  # fmt: skip
    print(f"{'GET /healthz':24s} {h['median_ms']:8.1f} {h['p95_ms']:8.1f} {'':>8s} {'':>11s} "
          f"{'':>10s}  {' · '.join(map(str, h['p95_runs_ms']))}")  # fmt: skip
    print(f"{'POST /api/v1/tickets':24s} {p['median_ms']:8.1f} {p['p95_ms']:8.1f} {p['p99_ms']:8.1f} "
          f"{p['x_healthz_p95']:10.1f}× {p['server_cpu_ms']:10.1f}  "
          f"{' · '.join(map(str, p['p95_runs_ms']))}")  # fmt: skip
    print(f"goal ≤ 50 ms p95: {goal(r['goals']['p95<=50ms'])}; answers with place {c['place']}"
          f"/{c['answers']} (street {c['street']}), category {c['category']}, lead {c['lead']}, "
          f"duplicate candidates {c['duplicates']}, urgency {c['urgency']}")  # fmt: skip


# ---- main ----------------------------------------------------------------------------------------

RUNNERS: dict[str, tuple[Callable[[argparse.Namespace], dict[str, Any]], Callable[[dict[str, Any]], None] | None]] = {
    "classifier": (part_classifier, print_classifier),
    "request_type": (part_request_type, print_request_type),
    "address": (part_address, print_address),
    "urgency": (part_urgency, print_urgency),
    "duplicates": (part_duplicates, print_duplicates),
    "intake": (part_intake, None),  # prints per backend as it goes
}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only", default=",".join(PARTS), help=f"parts, comma-separated: {', '.join(PARTS)}"
    )
    ap.add_argument("--runs", type=int, default=3, help="repetitions of every timed measurement")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--texts", type=int, default=2000, help="classifier: single-text predictions per run"
    )
    ap.add_argument("--batch", type=int, default=5000, help="classifier: texts in the batch")
    ap.add_argument(
        "--tickets", type=int, default=1_000_000, help="intake: tickets in the database"
    )
    ap.add_argument("--days", type=int, default=20, help="intake: days of generated history")
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--requests", type=int, default=300, help="intake: POSTs per run")
    ap.add_argument("--warmup", type=int, default=30, help="intake: POSTs before measuring")
    ap.add_argument("--keep", action="store_true", help="intake: keep the generated database")
    ap.add_argument(
        "--url",
        help="intake: measure a database kept by an earlier --keep run (no generation, its "
        "active model) instead of a fresh one; the requests add tickets to it",
    )
    args = ap.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    machine = {
        "node": platform.node(), "arch": platform.machine(), "cores": os.cpu_count(),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
    }  # fmt: skip
    print(f"machine: {machine['node']} {machine['arch']}, {machine['cores']} cores, "
          f"Python {machine['python']}, SQLite {machine['sqlite']}")  # fmt: skip
    print(
        f"parts: {', '.join(parts)}; {args.runs} runs per timed figure (median); data {args.data}"
    )
    results: dict[str, Any] = {}
    for name in parts:
        run, show = RUNNERS[name]
        started = time.perf_counter()
        try:
            r = run(args)
        except Skip as e:
            print(f"\n{name}: SKIPPED — {e}")
            results[name] = {"skipped": str(e)}
            continue
        r["part_s"] = round(time.perf_counter() - started, 1)
        if show:
            show(r)
        results[name] = r
    print(json.dumps({"machine": machine, "args": {**vars(args), "data": str(args.data)},
                      "results": results}, ensure_ascii=False, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
