"""Labelled text sets read from CSV files, for training and evaluating the classifiers.

Pure: a file in, texts and labels out. Every value is read as a string (an ID or a code such as
"0101" keeps its zeros); a byte-order mark, as Excel writes one, is tolerated.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class DatasetError(ValueError):
    """A file that cannot give the texts and labels asked for (the message is for the user)."""


@dataclass(frozen=True)
class Labelled:
    texts: list[str]
    labels: list[str]
    dropped: int  # rows without a label


def columns(spec: str) -> list[str]:
    """`"留言主题,留言详情"` → `["留言主题", "留言详情"]` (the CLI's COL[,COL])."""
    names = [c.strip() for c in spec.split(",") if c.strip()]
    if not names:
        raise DatasetError("没有给出列名 (no column given)")
    return names


def read_labelled(path: str | Path, text: Sequence[str], label: str) -> Labelled:
    """Texts (the `text` columns joined by a space) and labels of a CSV file.

    Rows whose label is empty are dropped and counted: an unlabelled row can neither teach nor
    test a classifier. A row with a label but no text is kept (its label is still evidence of
    the class balance, and the empty text is what the model would be asked about).
    """
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise DatasetError(f"无法读取 {path}：{e.strerror}") from e
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in [*text, label] if c not in header]
        if missing:
            raise DatasetError(
                f"{path} 没有列 {'、'.join(missing)}（文件中的列：{'、'.join(header)}）"
            )
        texts, labels, dropped = [], [], 0
        for row in reader:
            value = (row[label] or "").strip()
            if not value:
                dropped += 1
                continue
            texts.append(" ".join((row[c] or "").strip() for c in text))
            labels.append(value)
    return Labelled(texts=texts, labels=labels, dropped=dropped)
