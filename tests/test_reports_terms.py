"""高频词 are the problems people raise: on the demo pack's texts and on real citizen messages
(`../shared/data`, skipped where absent) the top 20 problem terms hold none of a list of ~100
function words, pronouns and polite fillers, and hold recognisable problem words. Pure: no
database."""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from jiesu.reports.terms import STOP_TERMS, problem_terms, top_terms

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"

# What must never be a 高频词: function words, pronouns, polite filler and the hotline's own
# vocabulary (the words that topped the reports before: 一下 需要 我家 有没有 一个).
_FUNCTION = """
    一下 需要 我家 有没有 一个 请问 反映 问题 希望 您好 你好 谢谢 麻烦 尊敬 恳请 我们 你们 他们
    我 你 他 她 它 自己 本人 大家 这个 那个 这些 那些 这里 那里 哪里 什么 怎么 怎么办 为什么 如何
    是否 是不是 能不能 可以 能够 应该 必须 已经 一直 现在 目前 时候 时间 情况 事情 东西 方面 没有
    不能 无法 因为 所以 但是 而且 或者 如果 以及 并且 还是 就是 还有 可能 非常 特别 严重 经常 多次
    尽快 及时 马上 处理 解决 要求 联系 告知 回复 答复 咨询 投诉 举报 建议 求助 表扬 相关 有关 部门
    领导 政府 工作人员 市民 居民 群众 老百姓 业主 小区 社区 街道 附近 周边 地方 影响 导致 造成 出现
    存在 发现 知道 了解 看到 进行 开始 一些 很多 不少 所有 各种 其他 目前 今年 去年 每天 左右 以上
"""
FUNCTION_WORDS = frozenset(_FUNCTION.split())

_PROBLEMS = """
    噪音 噪音扰民 施工扰民 扰民 停车 停车难 乱停车 暖气不热 暖气 供暖 充电桩 漏水 物业 物业费
    电梯 垃圾 垃圾清运 油烟 拖欠工资 工资 占道经营 违建 井盖 路灯 路灯不亮 积水 停水 停电 污水
    施工 燃气味 共享单车 消防通道 公积金 医保 社保 退费 快递 公交 地铁 信号灯 拥堵 河道 整治
    开发商 安全隐患 房屋 学校 幼儿园 入学 车辆 环境 规划 违法 违规 工地 污染 臭味 绿化
    收费 乱收费 补贴 户口 培训 租房 楼道 人行道 医院 疫苗 养老金 低保 噪声 扬尘 工程 项目
"""
PROBLEM_WORDS = frozenset(_PROBLEMS.split())


def demo_texts() -> list[str]:
    """Every title and content of the demo pack's texts, slots filled as the generator does."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "citypacks/beijing/demo_texts.yaml").read_text())
    rng = random.Random(14)
    out = []
    for _ in range(3):
        for entry in data.values():
            if not isinstance(entry, dict):
                continue
            slots = defaultdict(lambda: "", street="东华门街道", district="东城区", n=rng.randint(2, 30),
                                days=7, community=rng.choice(data.get("places") or ["幸福家园"]),
                                road=rng.choice(data.get("roads") or ["朝阳路"]),
                                place="朝阳路公交站",
                                company=rng.choice(data.get("companies") or ["某公司"]))  # fmt: skip
            wordings = [entry, *[v for v in entry.values() if isinstance(v, dict)]]
            for w in wordings:
                for field in ("titles", "contents"):
                    for text in w.get(field) or []:
                        if isinstance(text, str):
                            out.append(text.format_map(slots))
    return out


def shared_texts() -> list[str]:
    files = [(SHARED / "teddycup2020" / "hot_messages.csv", ("留言主题", "留言详情")),
             (SHARED / "fuzhou12345" / "river_requests.csv", ("title", "content"))]  # fmt: skip
    present = [(p, cols) for p, cols in files if p.is_file()]
    if not present:
        pytest.skip(f"no citizen messages under {SHARED} (a checkout without ../shared/data)")
    texts = []
    for path, cols in present:
        with path.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))[:1200]
        texts += ["。".join(r.get(c) or "" for c in cols) for r in rows]
    return texts


def check(top: list[tuple[str, int]]) -> None:
    words = [w for w, _ in top]
    assert len(words) == 20, top
    assert not FUNCTION_WORDS & set(words), top
    assert len(PROBLEM_WORDS & set(words)) >= 5, top
    assert all(len(w) >= 2 for w in words)


def test_the_stop_list_holds_every_function_word() -> None:
    assert not (FUNCTION_WORDS - STOP_TERMS - {"我", "你", "他", "她", "它"})


def test_a_request_gives_its_problem_not_its_filler() -> None:
    assert problem_terms("您好，请问我家小区暖气不热怎么办？需要一下有没有人管") == ["暖气不热"]
    assert problem_terms("公司拖欠工资三个月，希望有关部门尽快处理") == ["拖欠工资"]
    assert "充电桩" in problem_terms("小区什么时候能安装电动车充电桩")
    assert "路灯不亮" in problem_terms("朝阳路路灯不亮，晚上出行不安全")
    assert problem_terms("仓山区A3区我们一下") == []  # places and masked names are not problems


def test_the_demo_texts_top_20_are_problems() -> None:
    check(top_terms(demo_texts(), 20))


def test_real_citizen_messages_top_20_are_problems() -> None:
    check(top_terms(shared_texts(), 20))
