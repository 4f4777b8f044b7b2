"""`jiesu intel`: train, evaluate and cross-validate the text classifiers from CSV files.

Each command prints one JSON object on stdout (Chinese kept readable), so that a script or a
benchmark can read the figures; progress and errors go to stderr. scikit-learn is imported by
the commands, not by this module, so `jiesu --help` stays quick.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Intake intelligence: the category and request-type classifiers.",
    no_args_is_help=True,
)

CsvOpt = Annotated[Path, typer.Option("--csv", help="CSV file (UTF-8, with or without BOM).")]
TextOpt = Annotated[
    str, typer.Option("--text", help="Text column(s), COL[,COL]: joined by a space.")
]
LabelOpt = Annotated[str, typer.Option("--label", help="Label column; empty labels are dropped.")]
KindOpt = Annotated[str, typer.Option("--kind", help="category | request_type")]
WordsOpt = Annotated[
    bool | None,
    typer.Option(
        "--words/--no-words",
        help="Add jieba word features (default: the kind's; slower, see classify.py).",
    ),
]


def _print(obj: dict[str, Any]) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))


def _fail(message: str) -> None:
    typer.echo(f"错误：{message}", err=True)
    raise typer.Exit(1)


def _read(csv_path: Path, text: str, label: str) -> Any:
    from jiesu.intel.datasets import DatasetError, columns, read_labelled

    try:
        data = read_labelled(csv_path, columns(text), label)
    except DatasetError as e:
        _fail(str(e))
    if not data.texts:
        _fail(f"{csv_path} 中没有带标签的行")
    if data.dropped:
        typer.echo(f"{csv_path}: 跳过 {data.dropped} 行无标签数据", err=True)
    return data


def _check_kind(kind: str) -> None:
    from jiesu.intel.classify import KINDS

    if kind not in KINDS:
        _fail(f"未知的 --kind {kind}（可选：{' | '.join(KINDS)}）")


@app.command("train")
def train_cmd(
    csv_path: CsvOpt,
    text: TextOpt,
    label: LabelOpt,
    out: Annotated[Path, typer.Option("--out", help="Folder for model.joblib and meta.json.")],
    kind: KindOpt = "category",
    words: WordsOpt = None,
    min_count: Annotated[
        int, typer.Option(help="Classes with fewer examples: relabelled --fallback or left out.")
    ] = 1,
    fallback: Annotated[
        str | None, typer.Option(help="Label for classes under --min-count (e.g. 其他).")
    ] = None,
    eval_csv: Annotated[
        Path | None, typer.Option(help="Evaluate on this file after training (stored in meta).")
    ] = None,
    eval_text: Annotated[
        str | None, typer.Option(help="Text column(s) of --eval-csv (default: --text).")
    ] = None,
    eval_label: Annotated[
        str | None, typer.Option(help="Label column of --eval-csv (default: --label).")
    ] = None,
) -> None:
    """Train a classifier on a labelled CSV and save it to --out."""
    from jiesu.intel.classify import evaluate, train

    _check_kind(kind)
    data = _read(csv_path, text, label)
    evaluation_data = _read(eval_csv, eval_text or text, eval_label or label) if eval_csv else None
    start = time.perf_counter()
    try:
        model = train(
            data.texts, data.labels, kind=kind, words=words, min_count=min_count, fallback=fallback
        )
    except ValueError as e:
        _fail(str(e))
    seconds = round(time.perf_counter() - start, 1)
    evaluation = (
        evaluate(model, evaluation_data.texts, evaluation_data.labels) if evaluation_data else None
    )
    model.save(out, evaluation=evaluation)
    _print(
        {
            "out": str(out),
            "kind": kind,
            "training_rows": model.training_rows,
            "labels": list(model.labels),
            "rare": model.rare,
            "train_seconds": seconds,
            "evaluation": evaluation,
        }
    )


@app.command("eval")
def eval_cmd(
    model_dir: Annotated[Path, typer.Option("--model", help="A folder written by `train`.")],
    csv_path: CsvOpt,
    text: TextOpt,
    label: LabelOpt,
) -> None:
    """Score a saved model on a labelled CSV: macro-F1, accuracy, per class, confusion, latency."""
    from jiesu.intel.classify import ModelFileError, TextClassifier, evaluate

    data = _read(csv_path, text, label)
    try:
        model = TextClassifier.load(model_dir)
    except ModelFileError as e:
        _fail(str(e))
    _print(evaluate(model, data.texts, data.labels))


@app.command("cv")
def cv_cmd(
    csv_path: CsvOpt,
    text: TextOpt,
    label: LabelOpt,
    folds: Annotated[int, typer.Option(help="Number of folds.", min=2)] = 5,
    kind: KindOpt = "category",
    words: WordsOpt = None,
) -> None:
    """Stratified k-fold on one labelled CSV: macro-F1 per fold, mean, pooled report."""
    from jiesu.intel.classify import cross_validate

    _check_kind(kind)
    data = _read(csv_path, text, label)
    try:
        result = cross_validate(data.texts, data.labels, folds=folds, kind=kind, words=words)
    except ValueError as e:
        _fail(str(e))
    _print(result)


# ---- the city's database: register, train on its history, the daily duplicates pass --------


@app.command("register")
def register_cmd(
    model_dir: Annotated[Path, typer.Option("--model", help="A folder written by `train`.")],
    name: Annotated[str | None, typer.Option(help="A name shown in the admin page.")] = None,
    source: Annotated[str | None, typer.Option(help="What it was trained on.")] = None,
    activate: Annotated[bool, typer.Option(help="Make it the active model of its kind.")] = False,
) -> None:
    """Store a trained model in the database as the next version of its kind."""
    from jiesu.cli_support import database
    from jiesu.errors import DomainError
    from jiesu.intel.classify import ModelFileError
    from jiesu.intel.service import register_model

    db = database()
    try:
        with db.write() as s:
            row = register_model(model_dir, db_session=s, name=name, activate=activate)
            if source:
                row.source = source[:300]
            out = {"id": row.id, "kind": row.kind, "version": row.version, "active": row.active}
    except (ModelFileError, DomainError) as e:
        _fail(str(e))
    _print(out)


@app.command("train-db")
def train_db_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder for model.joblib and meta.json.")],
    kind: KindOpt = "category",
    limit: Annotated[int, typer.Option(help="The most recent handled tickets to learn from.")] = (
        200_000
    ),
    holdout: Annotated[float, typer.Option(help="Share kept apart for the evaluation.")] = 0.1,
    register: Annotated[bool, typer.Option(help="Register it in the database.")] = False,
    activate: Annotated[bool, typer.Option(help="Register and make it active.")] = False,
) -> None:
    """Train on the city's own handled tickets: the category (or request type) as it stands now,
    so re-categorisations and corrected dispatches teach the next model. A random share is kept
    apart and the evaluation on it is stored with the model."""
    import random

    from jiesu.cli_support import database
    from jiesu.intel.classify import evaluate, train
    from jiesu.intel.service import register_model, training_rows

    _check_kind(kind)
    db = database()
    with db.read() as s:
        rows = list(training_rows(kind, db_session=s, limit=limit))
    if len(rows) < 50:
        _fail(f"历史工单太少（{len(rows)} 件），无法训练")
    random.Random(0).shuffle(rows)
    cut = int(len(rows) * (1 - holdout))
    start = time.perf_counter()
    model = train([t for t, _ in rows[:cut]], [y for _, y in rows[:cut]], kind=kind)
    seconds = round(time.perf_counter() - start, 1)
    evaluation = evaluate(model, [t for t, _ in rows[cut:]], [y for _, y in rows[cut:]])
    model.save(out, evaluation=evaluation)
    result: dict[str, Any] = {"out": str(out), "kind": kind, "training_rows": cut,
                              "holdout_rows": len(rows) - cut, "train_seconds": seconds,
                              "macro_f1": evaluation["macro_f1"],
                              "accuracy": evaluation["accuracy"]}  # fmt: skip
    if register or activate:
        with db.write() as s:
            row = register_model(out, db_session=s, activate=activate,
                                 name=f"{'事项分类' if kind == 'category' else '诉求类型'}（本市历史）")  # fmt: skip
            row.source = f"本市历史工单 {len(rows)} 件（留出 {holdout:.0%} 评估）"
            result |= {"id": row.id, "version": row.version, "active": row.active}
    _print(result)


@app.command("duplicates")
def duplicates_cmd(
    day: Annotated[str, typer.Option(help="The day to check, YYYY-MM-DD (the city's time).")],
) -> None:
    """The daily batch pass: same-event groups among a day's tickets, as merge suggestions."""
    from datetime import date, datetime, timedelta

    from jiesu.cli_support import database
    from jiesu.intel.service import duplicate_groups
    from jiesu.settings import city_tz

    try:
        first = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=city_tz())
    except ValueError:
        _fail(f"日期格式应为 YYYY-MM-DD：{day}")
    with database().read() as s:
        groups = duplicate_groups(first, first + timedelta(days=1), db_session=s)
    _print({"day": day, "groups": groups, "count": len(groups)})
