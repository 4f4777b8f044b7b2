"""高频词: the words and phrases about the matter a citizen raises (噪音, 停车, 暖气不热, 拖欠工资),
never the words every request uses (一下, 需要, 我家, 有没有, 请问, 反映, 问题).

`problem_terms(text)` segments with jieba's part-of-speech tagger and keeps
- nouns and noun-like words (n, nz, vn, an, and idioms such as 安全隐患): what the matter is;
- verb + noun phrases (拖欠 工资 → 拖欠工资, 占用 车道 → 占用车道): what is done wrong;
- noun + negation + adjective or verb (暖气 不 热 → 暖气不热, 路灯 不 亮 → 路灯不亮): what is
  wrong with a thing;
and drops person, place and organisation names (the report's 诉求热点 counts places), numbers,
masked names (A市, A3区), single characters, and `STOP_TERMS`: function words, pronouns, polite
filler and the words of the hotline itself. Pure apart from jieba's dictionary, loaded once per
process (about a second) on first use.

`top_terms(texts)` counts each term once per text: the share is of texts that raise it.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

# What a report's 高频词 must never be: function words, pronouns, polite filler, vague nouns,
# and the vocabulary of the hotline (every request 反映 a 问题 and 希望 it 尽快 解决).
_STOP = """
    一下 一个 一些 一直 一起 一样 一般 一定 一次 一天 有没有 没有 是否 是不是 能不能 可不可以 请问
    您好 你好 谢谢 感谢 麻烦 尊敬 恳请 恳求 请求 希望 需要 要求 想要 想问 咨询 反映 反应 投诉 举报
    建议 表扬 求助 问题 情况 事情 事项 事儿 东西 方面 原因 结果 办法 方式 时候 时间 期间 现在 目前
    已经 现象 行为 部分 全部 基本 实际 具体 相关 有关 关于 其他 其它 这个 那个 这些 那些 这种 这样
    那样 这里 那里 哪里 什么 怎么 怎么办 为什么 如何 为何 多少 我们 你们 他们 她们 它们 自己 本人
    我家 我们家 家里 家人 大家 别人 他人 个人 人员 工作人员 群众 市民 居民 老百姓 百姓 人民 业主
    住户 领导 政府 部门 单位 相关部门 有关部门 公司 机构 中心 街道 社区 小区 地方 附近 周边 周围
    区域 地区 位置 地址 电话 号码 联系 联系方式 处理 解决 办理 落实 进行 开始 出现 存在 发现 发生
    导致 造成 影响 属于 作为 没法 无法 不能 不会 可以 能够 应该 必须 知道 了解 看到 告知 回复
    答复 通知 关注 重视 考虑 帮助 帮忙 协调 核实 核查 督促 尽快 马上 立即 及时 一直 多次 经常
    总是 还是 就是 还有 但是 因为 所以 如果 而且 或者 以及 并且 甚至 可能 根本 非常 特别 严重 正常 生活
    工作 管理 服务 建设 规定 政策 文件 来电 来信 留言 诉求 热线 工单 市长 书记 局长 主任 同志
    师傅 先生 女士 老师 情况说明 一名 两个 每天 今年 去年 明年 当时 之前 以后 左右 以上 以下
    无人 没人 有人 大量 很多 不少 所有 任何 各种 各位 之后 此事 此类 该事 本地 当地 城市 市里
    区里 国家 社会 全市 我市 本市 合理 合法 规范 相应 有效 权益 利益 损失 安全 方便 困难 麻烦
    孩子 小孩 老人 父母 家长 子女 邻居 朋友 自家 家中 材料 条件 标准 信息 证明 手续 流程 程序
    多长时间 每天晚上 有限公司 市政府 区政府 外地 危险 家园 花园 地点 人们 单位名称 原因是
"""
STOP_TERMS: frozenset[str] = frozenset(_STOP.split())

# Hotline words jieba's dictionary splits (充电 桩, 路 灯不亮, 暖气 不 热): taught as words.
_HOTLINE_WORDS = """
    充电桩 路灯 暖气不热 路灯不亮 噪音扰民 施工扰民 乱停车 停车难 停车位 占道经营 违章建筑 违建
    私搭乱建 漏水 渗水 拖欠工资 欠薪 垃圾清运 垃圾分类 电梯故障 供暖 停水 停电 水压低 油烟
    物业费 群租房 共享单车 井盖 下水道 化粪池 污水外溢 遛狗不拴绳 养犬 流浪猫 噪声 广场舞
    燃气泄漏 燃气味 飞线充电 消防通道 楼道堆物 违规停车 交通拥堵 公交站 红绿灯 信号灯 医保
    社保 公积金 退休金 养老金 入学 学区 幼儿园 退费 预付卡 快递 外卖 网约车 出租车 拒载 物业服务
"""
_NOUNISH = frozenset(("n", "nz", "vn", "an", "i", "nw"))  # jieba tags kept as single terms
_VERB = frozenset(("v", "vn"))
_NOUN = frozenset(("n", "nz", "vn"))
_NEGATION = frozenset(("不", "没", "没有", "太"))
_AFTER_NEGATION = frozenset(("a", "v", "ad", "vn", "n"))  # jieba tags 热 of 不热 a noun
# Place names jieba tags as nouns (仓山区, 幸福家园): the report counts places as 诉求热点.
_PLACE = re.compile(r"..(区|市|县|镇|乡|省|街道|社区|小区|村|路|街|巷|胡同|里|园|苑|城|大道|大街)$")
_ARTEFACT = re.compile(r"_x000[da]_", re.IGNORECASE)
_CJK_ONLY = re.compile(r"^[\u3400-\u9fff]+$")
# A word right before one of these is the name of a place (和平 小区, 幸福 家园, 朝阳 路).
_PLACE_TAILS = """
    小区 社区 街道 里 园 家园 花园 路 街 大街 胡同 巷 村 区 市 县 镇 乡 号楼 号院 公寓 大厦 广场 苑
    城 新城 东里 西里 南里 北里 嘉园 公交站 地铁站 交叉口
"""
_PLACE_TAIL = frozenset(_PLACE_TAILS.split())
_tagger: Any = None
_lock = threading.Lock()


def _tag() -> Any:
    """jieba's part-of-speech tagger, loaded once per process."""
    global _tagger
    if _tagger is None:
        with _lock:
            if _tagger is None:
                import jieba
                import jieba.posseg

                jieba.setLogLevel(logging.WARNING)
                tokenizer = jieba.Tokenizer()
                tagger = jieba.posseg.POSTokenizer(tokenizer)
                for w in _HOTLINE_WORDS.split():
                    tagger.add_word(w, 2000, "n")  # also teaches the tokenizer
                tagger.lcut("预热")  # load the dictionary now, under the lock
                _tagger = tagger
    return _tagger


def _word(w: str) -> bool:
    """A candidate word: two or more CJK characters (no digits, letters, masked A市) and not
    in the stop list."""
    return (len(w) >= 2 and bool(_CJK_ONLY.match(w)) and w not in STOP_TERMS
            and not _PLACE.match(w))  # fmt: skip


def problem_terms(text: str) -> list[str]:
    """The distinct problem terms of a text, in order of first appearance."""
    text = _ARTEFACT.sub("", unicodedata.normalize("NFKC", text or ""))
    pairs = [(p.word, p.flag) for p in _tag().lcut(text, HMM=False)]
    found: dict[str, None] = {}
    for i, (w, flag) in enumerate(pairs):
        nxt = pairs[i + 1] if i + 1 < len(pairs) else None
        if nxt is not None and nxt[0] in _PLACE_TAIL:
            continue  # 和平 of 和平小区: a place's name
        if flag in _NOUNISH and _word(w):
            found[w] = None
        if nxt is None:
            continue
        if flag in _VERB and nxt[1] in _NOUN and _word(w) and _word(nxt[0]):
            found[w + nxt[0]] = None  # 拖欠工资
        if flag in _NOUN and _word(w) and nxt[0] in _NEGATION and i + 2 < len(pairs):
            after, after_flag = pairs[i + 2]
            if after_flag in _AFTER_NEGATION and after not in STOP_TERMS and len(after) <= 2:
                found[w + nxt[0] + after] = None  # 暖气不热
    return list(found)


def top_terms(texts: Iterable[str], limit: int = 20) -> list[tuple[str, int]]:
    """The `limit` terms raised by most texts, with how many texts raise each; a phrase and a
    word inside it that always come together count once (the phrase)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(problem_terms(text))
    ranked = counts.most_common()
    out: list[tuple[str, int]] = []
    for term, n in ranked:
        if n < 2 and out:
            break
        if any(term in longer and n <= m for longer, m in out):
            continue  # 工资 raised only as 拖欠工资: the phrase says it
        out.append((term, n))
        if len(out) >= limit:
            break
    return out


__all__ = ["STOP_TERMS", "problem_terms", "top_terms"]
