"""Synonyms of the knowledge base's search (issue 16): the general groups, the city pack's
`synonyms.csv` (read, validated, stored, merged) and the per-process cache."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from jiesu.citypack.export import export_pack
from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.demo.generate import DEFAULT_PACK
from jiesu.knowledge import synonyms
from jiesu.knowledge.relevance import normalise
from jiesu.taxonomy.models import CitySetting

TINY = Path(__file__).parent / "packs" / "tiny"


def test_general_groups_are_many_distinct_and_normalised() -> None:
    groups = synonyms.GENERAL
    assert len(groups) >= 80
    assert all(len(g) >= 2 and len(set(g)) == len(g) for g in groups)
    counts = Counter(w for g in groups for w in g)
    assert [w for w, n in counts.items() if n > 1] == []
    assert [w for g in groups for w in g if normalise(w) != w or w != w.strip()] == []
    canonical = {g[0]: g for g in groups}
    for formal, word in (("社会保障卡", "社保卡"), ("住房公积金", "公积金"), ("供暖", "暖气"),
                         ("医疗保险", "医保"), ("机动车驾驶证", "驾照"), ("居住证", "暂住证"),
                         ("不动产权证书", "房本"), ("怎么", "咋"), ("什么", "啥"),
                         ("孩子", "娃"), ("丢失", "掉了"), ("失业保险金", "失业金")):  # fmt: skip
        assert word in canonical[formal], (formal, word)
    # only true synonyms: a kindergarten is not a nursery
    assert not any("幼儿园" in " ".join(g) and "托儿所" in g for g in groups)


def test_merge_joins_city_groups_with_the_general_ones() -> None:
    general = (("社会保障卡", "社保卡"), ("医疗保险卡", "医保卡"), ("供暖", "暖气"))
    city = [
        ["社会保障卡", "医保卡", "北京社保卡"],
        ["京医通", "就诊卡"],
        ["孤词"],
        ["暖气", "暖气"],
    ]
    merged = synonyms._merge(general, city)
    assert merged == (
        ("社会保障卡", "社保卡", "医疗保险卡", "医保卡", "北京社保卡"),
        ("供暖", "暖气"),
        ("京医通", "就诊卡"),
    )
    assert synonyms.city_groups("not a list") == []
    assert synonyms.city_groups([["a", 1, "b"], "x"]) == [["a", "b"]]


def _pack_with(tmp_path: Path, csv: str | None) -> Path:
    root = tmp_path / "pack"
    shutil.copytree(TINY, root)
    if csv is not None:
        (root / "synonyms.csv").write_text(csv, encoding="utf-8")
    return root


def test_the_pack_file_is_read_and_checked(tmp_path: Path) -> None:
    assert read_pack(_pack_with(tmp_path / "a", None)).synonyms == []
    good = read_pack(_pack_with(tmp_path / "b", "words,note\n京医通|就诊卡,医院\n\n北京通|京通,\n"))
    assert good.ok, good.errors
    assert good.synonyms == [["京医通", "就诊卡"], ["北京通", "京通"]]
    bad = read_pack(
        _pack_with(
            tmp_path / "c",
            "words,colour\n京医通|就诊卡,x\n京医通|医院卡,x\n一个|一个,x\n" + "长" * 31 + "|短,x\n",
        )
    )
    reasons = [f"{e.line}: {e.reason}" for e in bad.errors if e.file == "synonyms.csv"]
    assert reasons == [
        "1: unknown column(s): colour",
        "3: '京医通' is already in the group at line 2",
        "4: a group needs at least two different words",
        "5: synonym.word is 31 characters long; at most 30",
    ]
    assert bad.synonyms == [["京医通", "就诊卡"]]


def test_beijing_pack_names_its_own_words() -> None:
    pack = read_pack(DEFAULT_PACK)
    assert pack.ok, pack.errors
    words = {w for g in pack.synonyms for w in g}
    assert {"京医通", "一老一小", "北京通"} <= words


def test_groups_follow_the_loaded_pack(empty_url: str, tmp_path: Path) -> None:
    db = Database(empty_url)
    synonyms.clear_cache()
    try:
        with db.write() as s:
            load_pack(read_pack(_pack_with(tmp_path / "a", None)), db_session=s)
        with db.read() as s:
            assert synonyms.groups(db_session=s) == synonyms.GENERAL
        pack = read_pack(_pack_with(tmp_path / "b", "words\n京医通|就诊卡\n社会保障卡|医保卡\n"))
        with db.write() as s:
            stats = load_pack(pack, db_session=s)
        assert stats["synonyms.created"] == 1
        with db.read() as s:
            groups = synonyms.groups(db_session=s)
            assert groups[-1] == ("京医通", "就诊卡")
            social = next(g for g in groups if g[0] == "社会保障卡")
            assert "医保卡" in social and "医疗保险卡" in social
            assert synonyms.groups(db_session=s) is groups  # cached
        with db.write() as s:
            assert load_pack(pack, db_session=s)["synonyms.updated"] == 0
            stats = load_pack(
                read_pack(_pack_with(tmp_path / "c", "words\n京医通|就诊卡|医院卡\n")),
                db_session=s,
            )
        assert stats["synonyms.updated"] == 1
        with db.read() as s:
            assert synonyms.groups(db_session=s)[-1] == ("京医通", "就诊卡", "医院卡")
            assert s.get(CitySetting, synonyms.SETTING_KEY) is not None
        with db.write() as s:  # a pack without the file: the city's groups go
            assert (
                load_pack(read_pack(_pack_with(tmp_path / "d", None)), db_session=s)[
                    "synonyms.deleted"
                ]
                == 1
            )
        with db.read() as s:
            assert s.scalar(select(CitySetting).where(CitySetting.key == "synonyms")) is None
            assert synonyms.groups(db_session=s) == synonyms.GENERAL
    finally:
        synonyms.clear_cache()
        db.dispose()


def test_the_export_keeps_the_city_words(empty_url: str, tmp_path: Path) -> None:
    db = Database(empty_url)
    try:
        pack = read_pack(_pack_with(tmp_path / "a", "words\n京医通|就诊卡\n北京通|京通\n"))
        with db.write() as s:
            load_pack(pack, db_session=s)
        with db.read() as s:
            stats = export_pack(tmp_path / "out", db_session=s)
        assert stats["synonyms"] == 2
        assert read_pack(tmp_path / "out").synonyms == [["京医通", "就诊卡"], ["北京通", "京通"]]
        with db.write() as s:
            load_pack(read_pack(_pack_with(tmp_path / "b", None)), db_session=s)
        with db.read() as s:
            export_pack(tmp_path / "none", db_session=s)
        assert not (tmp_path / "none" / "synonyms.csv").exists()
    finally:
        db.dispose()
