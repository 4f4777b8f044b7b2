"""The category and request-type classifiers (issue 5): text preparation, training, confidence,
saved models, evaluation figures, cross-validation with rare classes, the CLI, and the quality
reached on the Teddy Cup data (skipped where ../shared/data is absent)."""

from __future__ import annotations

import csv
import itertools
import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jiesu.cli import app as jiesu_app
from jiesu.intel import text
from jiesu.intel.classify import (
    ModelFileError,
    Prediction,
    TextClassifier,
    cross_validate,
    evaluate,
    train,
)
from jiesu.intel.datasets import DatasetError, columns, read_labelled

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TEDDY = DATA / "teddycup2020"
FUZHOU = DATA / "fuzhou12345" / "river_requests.csv"


# ---- a tiny city's tickets ----------------------------------------------------------------

TOPICS = {
    "环境保护": (
        ["工地", "工厂", "饭店", "搅拌站"],
        ["噪音扰民", "排放污水", "油烟污染", "粉尘污染"],
    ),
    "劳动和社会保障": (
        ["公司", "老板", "单位", "工地"],
        ["拖欠工资", "不交社保", "拒发加班费", "辞退职工"],
    ),
    "教育文体": (
        ["学校", "幼儿园", "培训班", "中学"],
        ["乱收费", "老师体罚学生", "招生不公", "课业负担重"],
    ),
}
PLACES = ["A市A3区", "A市A5区", "B县", "C市"]


def tickets() -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for label, (subjects, problems) in TOPICS.items():
        for i, (subject, problem) in enumerate(itertools.product(subjects, problems)):
            place = PLACES[i % len(PLACES)]
            texts.append(f"{place}某{subject}{problem}，请有关部门尽快处理！")
            labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def small_model() -> TextClassifier:
    texts, labels = tickets()
    return train(texts, labels, kind="category")


# ---- text preparation ---------------------------------------------------------------------


def test_normalise_removes_excel_artefacts_full_width_and_whitespace() -> None:
    raw = "投诉_x000D_\n噪音　扰民！ＡＢＣ１２３_x000d_\t（请处理）"
    assert text.normalise(raw) == "投诉噪音扰民abc123请处理"


def test_segmented_and_raw_text_are_prepared_alike() -> None:
    raw = "我们小区的路灯坏了，没有人来修。"
    segmented = "小区 路灯 坏 人 修"  # the training file: segmented, stop words removed
    assert text.prepare(raw) == text.prepare(segmented) == "小区路灯坏人修"


def test_masked_places_and_numbers_are_prepared_alike() -> None:
    # The segmented file keeps "A3" but drops the lone "A" of "A市" and one-digit numbers.
    raw = "A市A3区的2号楼，2019年漏水"
    segmented = "市 A3 区 号楼 2019 年 漏水"
    assert text.prepare(raw) == text.prepare(segmented) == "市a区号楼年漏水"


def test_stop_words_are_kept_when_asked() -> None:
    # A request type is partly told by function words: 为什么 … 吗 asks (咨询).
    assert text.prepare("为什么还没有修好吗？", stop_words=False) == "为什么还没有修好吗"
    assert "为什么" not in text.prepare("为什么还没有修好吗？")


def test_head_is_the_first_characters_of_a_prepared_text() -> None:
    prepared = text.prepare("关于A3区某小区夜间施工噪音扰民的投诉 " + "详情" * 50)
    assert text.head(prepared) == prepared[: text.HEAD_CHARS]
    assert text.head(prepared) == "a区某小区夜间施工噪音扰民投诉详情详情详"


def test_words_segment_a_prepared_text_with_jieba() -> None:
    assert text.words("小区路灯坏了") == ["小区", "路灯", "坏", "了"]


# ---- training and prediction --------------------------------------------------------------


def test_trained_model_labels_new_tickets(small_model: TextClassifier) -> None:
    assert small_model.labels == ("劳动和社会保障", "教育文体", "环境保护")
    cases = {
        "D市一家饭店排放污水，臭气熏天": "环境保护",
        "老板拖欠工资三个月了，怎么办": "劳动和社会保障",
        "孩子所在幼儿园乱收费": "教育文体",
    }
    predictions = small_model.predict(list(cases))
    assert [p.label for p in predictions] == list(cases.values())


def test_prediction_carries_a_calibrated_confidence_and_a_ranking(
    small_model: TextClassifier,
) -> None:
    p = small_model.predict_one("工地夜里施工噪音扰民")
    assert isinstance(p, Prediction)
    assert p.label == "环境保护"
    assert p.ranked[0] == (p.label, p.confidence)
    assert [label for label, _ in p.ranked] == sorted(
        small_model.labels, key=dict(p.ranked).__getitem__, reverse=True
    )
    assert all(0.0 <= c <= 1.0 for _, c in p.ranked)
    assert sum(c for _, c in p.ranked) == pytest.approx(1.0, abs=1e-3)  # all 3 labels ranked
    assert p.confidence > 1 / 3
    assert len(small_model.predict_one("工地噪音", top=2).ranked) == 2


def test_predict_of_nothing_is_nothing(small_model: TextClassifier) -> None:
    assert small_model.predict([]) == []


def test_training_needs_two_classes() -> None:
    with pytest.raises(ValueError):
        train(["噪音扰民", "油烟污染"], ["环境保护", "环境保护"])


def test_unknown_kind_is_refused() -> None:
    texts, labels = tickets()
    with pytest.raises(ValueError, match="unknown kind"):
        train(texts, labels, kind="urgency")


def test_classes_under_min_count_go_to_the_fallback_label() -> None:
    texts, labels = tickets()
    texts += ["路灯不亮", "井盖丢失"]
    labels += ["城乡建设", "城乡建设"]
    model = train(texts, labels, min_count=3, fallback="其他")
    assert "城乡建设" not in model.labels and "其他" in model.labels
    assert model.rare == {"城乡建设": 2}
    assert model.meta()["fallback"] == "其他"
    left_out = train(texts, labels, min_count=3)
    assert "城乡建设" not in left_out.labels and "其他" not in left_out.labels
    assert left_out.training_rows == len(texts) - 2


# ---- saved models -------------------------------------------------------------------------


def test_save_and_load_give_the_same_predictions(
    small_model: TextClassifier, tmp_path: Path
) -> None:
    evaluation = {"macro_f1": 1.0}
    small_model.save(tmp_path / "m", evaluation=evaluation)
    meta = json.loads((tmp_path / "m" / "meta.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "category"
    assert meta["labels"] == list(small_model.labels)
    assert meta["training_rows"] == 48
    assert meta["evaluation"] == evaluation
    assert len(meta["sha256"]) == 64
    assert meta["sklearn_version"]
    assert datetime.fromisoformat(meta["created_at"]).utcoffset().total_seconds() == 0
    loaded = TextClassifier.load(tmp_path / "m")
    probe = ["饭店油烟污染", "单位不交社保", "中学招生不公"]
    assert loaded.predict(probe) == small_model.predict(probe)
    assert loaded.temperature == small_model.temperature


def test_load_refuses_an_altered_model_file(small_model: TextClassifier, tmp_path: Path) -> None:
    small_model.save(tmp_path / "m")
    with (tmp_path / "m" / "model.joblib").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFileError, match="SHA-256"):
        TextClassifier.load(tmp_path / "m")


def test_load_refuses_a_folder_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError):
        TextClassifier.load(tmp_path)


# ---- evaluation ---------------------------------------------------------------------------


class Fixed:
    """A model that answers a fixed label per text, to check the figures by hand."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def predict(self, texts: list[str]) -> list[Prediction]:
        return [self.predict_one(t) for t in texts]

    def predict_one(self, text: str) -> Prediction:
        label = self.answers[text]
        return Prediction(label=label, confidence=1.0, ranked=((label, 1.0),))


def test_evaluate_figures_by_hand() -> None:
    # truth a a b b c, predicted a b b b a:
    # a: precision 1/2, recall 1/2, F1 .5; b: 2/3, 1, .8; c: 0, 0, 0 → macro .4333, accuracy .6
    model = Fixed({"1": "a", "2": "b", "3": "b", "4": "b", "5": "a"})
    result = evaluate(model, ["1", "2", "3", "4", "5"], ["a", "a", "b", "b", "c"])
    assert result["macro_f1"] == pytest.approx(0.4333, abs=1e-4)
    assert result["accuracy"] == 0.6
    assert result["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert result["per_class"]["b"] == {
        "precision": 0.6667,
        "recall": 1.0,
        "f1": 0.8,
        "support": 2,
    }
    assert result["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["confusion"] == {
        "labels": ["a", "b", "c"],
        "matrix": [[1, 1, 0], [0, 2, 0], [1, 0, 0]],
    }
    latency = result["latency"]
    assert set(latency) == {"single_p50_ms", "single_p99_ms", "batch_per_s"}
    assert 0 <= latency["single_p50_ms"] <= latency["single_p99_ms"]


def test_evaluate_counts_a_label_only_predicted_in_the_macro_average() -> None:
    model = Fixed({"1": "a", "2": "z"})
    result = evaluate(model, ["1", "2"], ["a", "a"])
    assert result["confusion"]["labels"] == ["a", "z"]
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0) / 2, abs=1e-4)


def test_evaluate_needs_matching_labels() -> None:
    with pytest.raises(ValueError):
        evaluate(Fixed({}), ["1"], [])


# ---- cross-validation ---------------------------------------------------------------------


def test_cross_validation_keeps_and_reports_rare_classes() -> None:
    texts, labels = tickets()
    texts += ["路灯不亮", "井盖丢失"]
    labels += ["城乡建设", "城乡建设"]
    result = cross_validate(texts, labels, folds=3)
    assert len(result["fold_macro_f1"]) == 3
    assert result["mean_macro_f1"] == pytest.approx(sum(result["fold_macro_f1"]) / 3, abs=1e-4)
    assert result["rare"] == {"城乡建设": 2}
    assert result["pooled"]["per_class"]["城乡建设"]["support"] == 2
    assert sum(result["class_counts"].values()) == result["rows"] == 50
    assert result["pooled"]["per_class"]["环境保护"]["f1"] > 0.8


def test_cross_validation_keeps_duplicates_in_one_fold() -> None:
    # Every text twice: were twins split, each would be answered by its copy (F1 1.0).
    texts = ["噪音", "油烟", "工资", "社保", "学费", "老师"] * 2
    labels = ["环境保护", "环境保护", "劳动", "劳动", "教育", "教育"] * 2
    result = cross_validate(texts, labels, folds=2)
    assert result["pooled"]["accuracy"] < 1.0


# ---- datasets -----------------------------------------------------------------------------


def write_csv(path: Path, rows: list[list[str]], *, bom: bool) -> Path:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.mark.parametrize("bom", [True, False])
def test_read_labelled_joins_text_columns_and_drops_unlabelled_rows(
    tmp_path: Path, bom: bool
) -> None:
    path = write_csv(
        tmp_path / "t.csv",
        [
            ["编号", "主题", "详情", "类别"],
            ["007", "路灯", "不亮", "城乡建设"],
            ["008", "噪音", "扰民", " "],
        ],
        bom=bom,
    )
    data = read_labelled(path, columns("主题, 详情"), "类别")
    assert data.texts == ["路灯 不亮"]
    assert data.labels == ["城乡建设"]
    assert data.dropped == 1


def test_read_labelled_names_the_missing_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [["主题", "类别"], ["路灯", "城乡建设"]], bom=False)
    with pytest.raises(DatasetError, match="详情"):
        read_labelled(path, ["详情"], "类别")


# ---- the command line ---------------------------------------------------------------------


def test_cli_train_then_eval_print_one_json_object(tmp_path: Path) -> None:
    texts, labels = tickets()
    rows = [["主题", "详情", "类别"]] + [
        [t[:8], t[8:], y] for t, y in zip(texts, labels, strict=True)
    ]
    train_csv = write_csv(tmp_path / "train.csv", rows, bom=True)
    test_csv = write_csv(
        tmp_path / "test.csv",
        [
            ["主题", "详情", "类别"],
            ["饭店", "油烟污染严重", "环境保护"],
            ["老板", "拖欠工资", "劳动和社会保障"],
        ],
        bom=False,
    )
    runner = CliRunner()
    common = ["--text", "主题,详情", "--label", "类别"]
    result = runner.invoke(
        jiesu_app,
        ["intel", "train", "--csv", str(train_csv), *common, "--out", str(tmp_path / "model"),
         "--eval-csv", str(test_csv)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    assert trained["training_rows"] == 48
    assert trained["evaluation"]["macro_f1"] == 1.0
    meta = json.loads((tmp_path / "model" / "meta.json").read_text(encoding="utf-8"))
    assert meta["evaluation"]["accuracy"] == 1.0

    result = runner.invoke(
        jiesu_app,
        ["intel", "eval", "--model", str(tmp_path / "model"), "--csv", str(test_csv), *common],
    )
    assert result.exit_code == 0, result.output
    assert "环境保护" in result.stdout  # Chinese stays readable
    figures = json.loads(result.stdout)
    assert figures["macro_f1"] == 1.0
    assert {"accuracy", "per_class", "confusion", "latency"} <= set(figures)

    result = runner.invoke(
        jiesu_app, ["intel", "cv", "--csv", str(train_csv), *common, "--folds", "3"]
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["fold_macro_f1"]) == 3


def test_cli_eval_refuses_a_missing_column_in_chinese(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [["主题", "类别"], ["路灯", "城乡建设"]], bom=False)
    result = CliRunner().invoke(
        jiesu_app,
        ["intel", "cv", "--csv", str(path), "--text", "详情", "--label", "类别"],
    )
    assert result.exit_code == 1
    assert "没有列 详情" in result.stderr


# ---- the real data (issue 5 acceptance) ---------------------------------------------------

needs_teddy = pytest.mark.skipif(
    not TEDDY.is_dir(), reason=f"Teddy Cup data not found at {TEDDY} (../shared/data is absent)"
)


@pytest.fixture(scope="module")
def teddy_dev() -> dict[str, object]:
    train_set = read_labelled(TEDDY / "train_segmented.csv", ["tokens"], "一级标签")
    dev = read_labelled(TEDDY / "dev.csv", ["留言主题", "留言详情"], "一级标签")
    model = train(train_set.texts, train_set.labels, kind="category")
    return evaluate(model, dev.texts, dev.labels, latency_sample=100)


# Measured when the model was chosen (see classify.py): 0.8605 macro-F1, 0.8537 accuracy. The
# dev file (the competition's sample messages) differs in content from the training file, so the
# earlier 0.90 target was withdrawn (issue 13 §2); this floor keeps the measured level.
@needs_teddy
def test_teddy_cup_dev_macro_f1_keeps_the_measured_level(teddy_dev: dict[str, object]) -> None:
    assert teddy_dev["macro_f1"] >= 0.85
    assert teddy_dev["accuracy"] >= 0.84


@pytest.mark.skipif(not FUZHOU.is_file(), reason=f"Fuzhou data not found at {FUZHOU}")
def test_fuzhou_request_type_cross_validation() -> None:
    data = read_labelled(FUZHOU, ["title", "content"], "request_type")
    result = cross_validate(data.texts, data.labels, folds=5, kind="request_type")
    assert result["rare"] == {"求助": 4}
    # Measured 0.5088 (folds 0.44 0.70 0.60 0.36 0.45): 求助 (4 examples) is never found.
    assert result["mean_macro_f1"] >= 0.45
    assert result["pooled"]["per_class"]["投诉"]["f1"] >= 0.9
