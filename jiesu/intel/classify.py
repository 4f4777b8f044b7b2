"""Text classifiers for intake: a ticket's category (事项分类) and request type (诉求类型).

Pure: texts and labels in, a model and plain dicts out; no database or web import. The design
is the one that did best in 5-fold cross-validation on the Teddy Cup training file, among
character and word n-grams, SVM, logistic regression, naive Bayes and their ensembles (all
within a point of each other), and is small and fast enough to answer an agent while typing:

- text: `text.prepare` (NFKC, artefacts and punctuation removed, optionally the stop words), so
  that segmented training files and raw tickets look alike;
- features: TF-IDF (sublinear) of character 1–3-grams of the whole text, plus character
  1–3-grams of its first 20 characters (about the subject) weighted by one half, optionally jieba
  word uni- and bigrams (a tenth of a point better, at half the speed: off by default);
  character n-grams need no segmenter and are immune to how the training file was segmented;
- classifier: a linear SVM, one-vs-rest, with balanced class weights (each class's errors weigh
  by the inverse of its frequency: macro-F1 counts a rare class as much as a common one);
- confidence: the SVM's scores through a softmax whose temperature is fitted on out-of-fold
  scores (temperature scaling: one number, so it stays stable with rare classes, where Platt
  scaling per class would fit noise). The ranking is the SVM's; only the scale is calibrated.
  The folds share the vectorizer fitted on all rows (a third of the training time instead of
  all of it), which makes the scores a little optimistic: on the Teddy Cup file the fitted
  temperature is 0.21 where per-fold vectorizers give 0.23. On text unlike the training set the
  confidences run high (dev: mean 0.92 for an accuracy of 0.85).

`evaluate` scores a model on a labelled set (quality and latency); `cross_validate` does k-fold
on one small labelled set, for data without a separate test file.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import joblib
import numpy as np
import sklearn
from numpy.typing import NDArray
from scipy import sparse
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.svm import LinearSVC

from jiesu.intel import text as textmod

MODEL_FILE = "model.joblib"
META_FILE = "meta.json"
FORMAT = 1


class ModelFileError(Exception):
    """A saved model that cannot be trusted or read (missing, altered, another format)."""


@dataclass(frozen=True)
class Settings:
    """What a kind of classifier is made of; `KINDS` holds one per kind."""

    stop_words: bool
    words: bool = False
    ngram_max: int = 3
    head_weight: float = 0.5
    c: float = 1.0


# Category: the training file had its stop words removed, so raw tickets must lose them too.
# Request type: the function words (如何, 吗, 为什么 …) are what tells 咨询 from 投诉 in principle;
# on the Fuzhou requests keeping them or not made no measurable difference (0.509 and 0.503
# mean macro-F1 in 5-fold cross-validation), so they are kept.
KINDS: dict[str, Settings] = {
    "category": Settings(stop_words=True),
    "request_type": Settings(stop_words=False),
}


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    ranked: tuple[tuple[str, float], ...] = field(default_factory=tuple)


class Predictor(Protocol):
    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...

    def predict_one(self, text: str) -> Prediction: ...


# ---- the model ----------------------------------------------------------------------------


class Features:
    """Text → one sparse row of TF-IDF blocks (`text.prepare` once, then every block).

    A plain class rather than a scikit-learn FeatureUnion: the union runs each block through
    joblib and re-validates its input, which costs more than the transform itself for the
    single ticket an agent is typing.
    """

    def __init__(self, settings: Settings, rows: int) -> None:
        self.stop_words = settings.stop_words
        # An n-gram seen once in thousands of texts is noise that doubles the model's size; in
        # a set of a few dozen texts every n-gram is precious.
        common: dict[str, Any] = {
            "sublinear_tf": True,
            "min_df": 2 if rows >= 500 else 1,
            "dtype": np.float32,
        }
        ngrams = (1, settings.ngram_max)
        self.blocks: list[tuple[str, TfidfVectorizer, float]] = [
            ("chars", TfidfVectorizer(analyzer="char", ngram_range=ngrams, **common), 1.0),
            (
                "head",
                TfidfVectorizer(
                    analyzer="char", ngram_range=ngrams, preprocessor=textmod.head, **common
                ),
                settings.head_weight,
            ),
        ]
        if settings.words:
            words = TfidfVectorizer(
                tokenizer=textmod.words,
                token_pattern=None,
                lowercase=False,
                ngram_range=(1, 2),
                **common,
            )
            self.blocks.append(("words", words, 1.0))

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        return [textmod.prepare(t, stop_words=self.stop_words) for t in texts]

    def fit_transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        prepared = self._prepare(texts)
        return self._stack([v.fit_transform(prepared) for _, v, _ in self.blocks])

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        prepared = self._prepare(texts)
        return self._stack([v.transform(prepared) for _, v, _ in self.blocks])

    def _stack(self, parts: list[Any]) -> sparse.csr_matrix:
        weighted = [
            m * w if w != 1.0 else m for m, (_, _, w) in zip(parts, self.blocks, strict=True)
        ]
        return sparse.hstack(weighted, format="csr")


def _svm(settings: Settings) -> Any:
    return LinearSVC(C=settings.c, class_weight="balanced", random_state=0)


def _scores(svm: Any, x: Any) -> NDArray[np.float64]:
    """Decision scores, one column per class in `svm.classes_` order (binary made symmetric)."""
    d = np.asarray(svm.decision_function(x), dtype=np.float64)
    if d.ndim == 1:
        d = np.column_stack([-d / 2, d / 2])
    return d


def _softmax(scores: NDArray[np.float64], temperature: float) -> NDArray[np.float64]:
    z = scores / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


class TextClassifier:
    """A trained classifier: `predict`, `predict_one`, `save`, `TextClassifier.load`."""

    def __init__(
        self,
        *,
        kind: str,
        settings: Settings,
        features: Features,
        svm: Any,
        temperature: float,
        training_rows: int,
        created_at: str,
        rare: dict[str, int] | None = None,
        fallback: str | None = None,
    ) -> None:
        self.kind = kind
        self.settings = settings
        self.features = features
        self.svm = svm
        self.temperature = temperature
        self.labels: tuple[str, ...] = tuple(str(c) for c in svm.classes_)
        self.training_rows = training_rows
        self.created_at = created_at
        self.rare = dict(rare or {})
        self.fallback = fallback

    def probabilities(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """One row per text, one column per label (`self.labels`), rows summing to 1."""
        return _softmax(_scores(self.svm, self.features.transform(texts)), self.temperature)

    def predict(self, texts: Sequence[str], *, top: int = 3) -> list[Prediction]:
        if len(texts) == 0:
            return []
        probs = self.probabilities(texts)
        order = np.argsort(-probs, axis=1)[:, :top]
        out = []
        for row, idx in zip(probs, order, strict=True):
            ranked = tuple((self.labels[i], round(float(row[i]), 4)) for i in idx)
            out.append(Prediction(label=ranked[0][0], confidence=ranked[0][1], ranked=ranked))
        return out

    def predict_one(self, text: str, *, top: int = 3) -> Prediction:
        return self.predict([text], top=top)[0]

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "labels": list(self.labels),
            "created_at": self.created_at,
            "training_rows": self.training_rows,
            "sklearn_version": sklearn.__version__,
            "settings": asdict(self.settings),
            "temperature": self.temperature,
            "rare": self.rare,
            "fallback": self.fallback,
        }

    def save(self, directory: str | Path, *, evaluation: dict[str, Any] | None = None) -> Path:
        """Write `model.joblib` and `meta.json` (with the file's SHA-256) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model_path = directory / MODEL_FILE
        payload = {
            "format": FORMAT,
            "features": self.features,
            "svm": self.svm,
            "temperature": self.temperature,
        }
        joblib.dump(payload, model_path, compress=3)
        meta = self.meta()
        meta["evaluation"] = evaluation
        meta["sha256"] = _sha256(model_path)
        (directory / META_FILE).write_text(
            json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> TextClassifier:
        """Read a saved model, refusing one whose `model.joblib` is not the file `save` wrote.

        The hash is checked before unpickling: a pickle runs code when read, so an altered file
        must never be opened.
        """
        directory = Path(directory)
        model_path, meta_path = directory / MODEL_FILE, directory / META_FILE
        if not model_path.is_file() or not meta_path.is_file():
            raise ModelFileError(f"{directory} 不是模型目录（缺少 {MODEL_FILE} 或 {META_FILE}）")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ModelFileError(f"{directory}: 模型格式 {meta.get('format')} 不受支持")
        if meta.get("sha256") != _sha256(model_path):
            raise ModelFileError(
                f"{model_path} 的 SHA-256 与 {META_FILE} 不符：文件被改动过，拒绝加载 "
                "(model file does not match its recorded hash)"
            )
        payload = joblib.load(model_path)
        return cls(
            kind=meta["kind"],
            settings=Settings(**meta["settings"]),
            features=payload["features"],
            svm=payload["svm"],
            temperature=float(payload["temperature"]),
            training_rows=int(meta["training_rows"]),
            created_at=meta["created_at"],
            rare=meta.get("rare"),
            fallback=meta.get("fallback"),
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- training -----------------------------------------------------------------------------


def _apply_min_count(
    texts: Sequence[str], labels: Sequence[str], min_count: int, fallback: str | None
) -> tuple[list[str], list[str], dict[str, int]]:
    """Classes with fewer than `min_count` examples: relabelled `fallback`, or left out."""
    counts = Counter(labels)
    rare = {label: n for label, n in sorted(counts.items()) if n < min_count}
    if not rare:
        return list(texts), list(labels), {}
    kept_texts, kept_labels = [], []
    for t, y in zip(texts, labels, strict=True):
        if y in rare:
            if fallback is None:
                continue
            y = fallback
        kept_texts.append(t)
        kept_labels.append(y)
    return kept_texts, kept_labels, rare


def _fit_temperature(
    x: Any,
    y: NDArray[np.str_],
    classes: NDArray[np.str_],
    settings: Settings,
    folds: int,
    seed: int,
) -> float:
    """The softmax temperature that minimises the log-loss of out-of-fold SVM scores.

    Columns of a class missing from a fold's training part score -inf there, and rows whose
    true class was missing are left out of the fit (no model could have ranked them).
    """
    folds = min(folds, len(y) // 2)
    if folds < 2:
        return 1.0
    column = {c: i for i, c in enumerate(classes)}
    scores = np.full((len(y), len(classes)), -np.inf)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Classes with fewer members than folds are expected here and handled as above.
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(splitter.split(np.zeros(len(y)), y))
    for train_idx, test_idx in splits:
        if len(set(y[train_idx])) < 2:
            continue
        svm = _svm(settings).fit(x[train_idx], y[train_idx])
        cols = [column[c] for c in svm.classes_]
        scores[np.ix_(test_idx, cols)] = _scores(svm, x[test_idx])
    truth = np.array([column[c] for c in y])
    usable = np.isfinite(scores[np.arange(len(y)), truth])
    if usable.sum() < 2:
        return 1.0
    s, t = scores[usable], truth[usable]

    def nll(log_t: float) -> float:
        return float(-log_softmax(s / math.exp(log_t), axis=1)[np.arange(len(t)), t].mean())

    result = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded")
    return round(math.exp(float(result.x)), 6)


def train(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    kind: str = "category",
    words: bool | None = None,
    min_count: int = 1,
    fallback: str | None = None,
    calibration_folds: int = 3,
    seed: int = 0,
) -> TextClassifier:
    """Fit a classifier of `kind` (see `KINDS`); `words` overrides the kind's word features.

    Rare classes: every class is kept and weighted by the inverse of its frequency. Set
    `min_count` to treat classes with fewer examples apart: relabelled `fallback` (e.g. 其他)
    when given, otherwise left out of training; either way the model's meta lists them.
    `calibration_folds=0` skips the confidence calibration (temperature 1), e.g. inside CV.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    settings = KINDS[kind]
    if words is not None:
        settings = Settings(**{**asdict(settings), "words": words})
    texts, labels_kept, rare = _apply_min_count(texts, labels, min_count, fallback)
    y = np.array(labels_kept, dtype=str)
    if len(set(labels_kept)) < 2:
        raise ValueError("训练至少需要两个类别 (at least two classes are needed)")
    features = Features(settings, len(texts))
    x = features.fit_transform(texts)
    svm = _svm(settings).fit(x, y)
    temperature = (
        _fit_temperature(x, y, svm.classes_, settings, calibration_folds, seed)
        if calibration_folds
        else 1.0
    )
    return TextClassifier(
        kind=kind,
        settings=settings,
        features=features,
        svm=svm,
        temperature=temperature,
        training_rows=len(texts),
        created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        rare=rare,
        fallback=fallback if rare else None,
    )


def calibrate(model: TextClassifier, texts: Sequence[str], labels: Sequence[str]) -> float:
    """Set the model's softmax temperature from rows it was not trained on (a held-out part):
    the temperature that minimises their log-loss. One pass over those rows instead of the
    cross-validation fits of `train` (for a model trained with `calibration_folds=0`); rows
    whose label the model does not know are left out. Returns the temperature."""
    column = {c: i for i, c in enumerate(model.labels)}
    kept = [(t, column[y]) for t, y in zip(texts, labels, strict=True) if y in column]
    if len(kept) < 2:
        return model.temperature
    s = _scores(model.svm, model.features.transform([t for t, _ in kept]))
    truth = np.array([i for _, i in kept])

    def nll(log_t: float) -> float:
        rows = np.arange(len(truth))
        return float(-log_softmax(s / math.exp(log_t), axis=1)[rows, truth].mean())

    result = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded")
    model.temperature = round(math.exp(float(result.x)), 6)
    return model.temperature


# ---- evaluation ---------------------------------------------------------------------------


def report(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """macro_f1, accuracy, per_class and confusion over the labels seen in either list.

    A label only predicted (never true) counts in the macro average with F1 0, as a label only
    true and never predicted does: both are errors the user would see.
    """
    labels = sorted(set(truth) | set(predicted))
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    matrix = confusion_matrix(truth, predicted, labels=labels)
    correct = sum(1 for a, b in zip(truth, predicted, strict=True) if a == b)
    return {
        "macro_f1": round(float(np.mean(f)), 4) if labels else 0.0,
        "accuracy": round(correct / len(truth), 4) if truth else 0.0,
        "per_class": {
            label: {
                "precision": round(float(p[i]), 4),
                "recall": round(float(r[i]), 4),
                "f1": round(float(f[i]), 4),
                "support": int(s[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": {"labels": labels, "matrix": matrix.tolist()},
    }


def evaluate(
    model: Predictor, texts: Sequence[str], labels: Sequence[str], *, latency_sample: int = 200
) -> dict[str, Any]:
    """Quality on a labelled set, and latency: one ticket at a time on the first
    `latency_sample` texts (p50, p99), and the whole set as one batch (tickets per second)."""
    if len(texts) != len(labels) or not texts:
        raise ValueError("evaluate needs as many labels as texts, and at least one")
    model.predict_one(texts[0])  # warm-up: lazy imports and caches are not the model's latency
    start = time.perf_counter()
    predictions = model.predict(texts)
    batch_seconds = time.perf_counter() - start
    single = []
    for t in texts[:latency_sample]:
        start = time.perf_counter()
        model.predict_one(t)
        single.append((time.perf_counter() - start) * 1000)
    result = report(labels, [p.label for p in predictions])
    result["latency"] = {
        "single_p50_ms": round(float(np.percentile(single, 50)), 3),
        "single_p99_ms": round(float(np.percentile(single, 99)), 3),
        "batch_per_s": round(len(texts) / batch_seconds, 1) if batch_seconds > 0 else None,
    }
    return result


def cross_validate(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    folds: int = 5,
    kind: str = "category",
    words: bool | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Stratified k-fold on one labelled set: macro-F1 per fold and mean, and the pooled report.

    - Identical texts (after `text.prepare`) stay in one fold, so a duplicate in the training
      part cannot answer for its twin in the test part.
    - Rare classes are kept, never merged: the split is stratified, so each of a class's n
      examples is tested once, in n different folds when n < folds (sklearn warns; expected).
      A fold's macro-F1 averages the labels true or predicted in that fold, so a rare class
      moves single folds a lot; the pooled report (every text predicted once, by a model that
      did not see it) is the figure to read for it. `rare` lists the classes with fewer
      examples than folds. In training they count with balanced weights (see `train`).
    - No confidence calibration inside the folds: it does not change the labels.
    """
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    settings = KINDS[kind]
    prepared = [textmod.prepare(t, stop_words=settings.stop_words) for t in texts]
    group_of: dict[str, int] = {}
    groups = [group_of.setdefault(p, len(group_of)) for p in prepared]
    y = np.array(labels, dtype=str)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = np.empty(len(y), dtype=object)
    fold_f1 = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(splitter.split(np.zeros(len(y)), y, groups))
    for train_idx, test_idx in splits:
        model = train(
            [texts[i] for i in train_idx],
            list(y[train_idx]),
            kind=kind,
            words=words,
            calibration_folds=0,
            seed=seed,
        )
        fold_pred = [p.label for p in model.predict([texts[i] for i in test_idx])]
        predicted[test_idx] = fold_pred
        fold_f1.append(report(list(y[test_idx]), fold_pred)["macro_f1"])
    counts = Counter(labels)
    return {
        "folds": folds,
        "rows": len(texts),
        "kind": kind,
        "fold_macro_f1": fold_f1,
        "mean_macro_f1": round(float(np.mean(fold_f1)), 4),
        "std_macro_f1": round(float(np.std(fold_f1)), 4),
        "pooled": report(list(y), [str(p) for p in predicted]),
        "class_counts": dict(counts.most_common()),
        "rare": {label: n for label, n in sorted(counts.items()) if n < folds},
    }
