"""Synonyms for the knowledge base's search (issue 16): the words callers use for what the
policies call something else.

`GENERAL` holds general Chinese public-service synonym groups, the same in every city: each
group's first word is the canonical (formal) one, the rest are words that mean **the same
thing** to a caller — an abbreviation (社保卡), an old name (暂住证), a colloquial word (暖气,
房本), a spoken form (咋 → 怎么). Words that are only related (幼儿园/托儿所, 医保卡/社保卡 in
cities where they are two cards) are not synonyms and stay out. Every word is written
simplified and lower-case, as `text.normalise` leaves it.

A city adds its own groups in its pack's `synonyms.csv` (docs/citypack.md; Beijing: 京医通,
一老一小, 北京通 …); `citypack/load.py` stores them in `city_setting` under the key
`synonyms`. `groups(db_session=…)` answers GENERAL and the city's groups, merged (a city group
that shares a word with a general group joins it), cached per process and per database, and
read again only when the stored row's `updated_at` changes (one primary-key read per call).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.taxonomy.models import CitySetting

SETTING_KEY = "synonyms"  # the city_setting row that holds the pack's groups

Groups = tuple[tuple[str, ...], ...]

GENERAL: Groups = (
    # ---- cards, documents and certificates
    ("社会保障卡", "社保卡", "社会保险卡"),
    ("医疗保险卡", "医保卡"),
    ("居民身份证", "身份证", "二代证"),
    ("临时身份证", "临时身份证明"),
    ("居住证", "暂住证"),
    ("户口簿", "户口本", "户口本子"),
    ("户籍", "户口"),
    ("机动车驾驶证", "驾驶证", "驾照", "驾驶本"),
    ("机动车行驶证", "行驶证", "行车本"),
    ("机动车号牌", "车牌", "车牌号", "牌照"),
    ("机动车", "汽车", "小汽车", "小客车", "私家车", "轿车"),
    ("电动自行车", "电动车", "电瓶车", "电驴"),
    ("不动产权证书", "不动产权证", "房产证", "房本", "房屋所有权证", "产权证"),
    ("结婚证", "婚姻证明"),
    ("出生医学证明", "出生证明", "出生证"),
    ("护照", "因私护照"),
    ("往来港澳通行证", "港澳通行证"),
    ("残疾人证", "残疾证"),
    ("营业执照", "工商执照"),
    ("无犯罪记录证明", "无犯罪证明"),
    ("学历证书", "毕业证"),
    ("市政交通一卡通", "一卡通", "交通卡", "公交卡"),
    # ---- social insurance, pensions, benefits
    ("社会保险", "社保"),
    ("住房公积金", "公积金"),
    ("医疗保险", "医保"),
    ("基本养老保险", "养老保险"),
    ("养老金", "退休金", "退休工资", "养老钱"),
    ("失业保险金", "失业金", "失业救济金"),
    ("生育津贴", "生育金", "产假工资"),
    ("生育保险", "生育险"),
    ("工伤保险", "工伤险"),
    ("城乡居民基本医疗保险", "城乡居民医保", "居民医保"),
    ("职工基本医疗保险", "职工医保"),
    ("异地就医", "外地看病", "异地看病"),
    ("门诊特殊病", "门特", "特殊病"),
    ("报销", "报账"),
    ("最低生活保障", "低保"),
    ("特困人员救助供养", "特困供养", "五保"),
    ("高龄津贴", "高龄补贴"),
    ("个人所得税", "个税"),
    ("社保缴费基数", "缴费基数", "社保基数"),
    ("补缴", "补交"),
    ("断缴", "停缴", "断交", "中断缴费", "没交"),
    ("缴费", "交费", "交钱", "缴钱"),
    ("转移接续", "社保转移", "转出转入"),
    ("转移", "挪过来", "挪到", "转过来"),
    ("提取", "取出来", "提现"),
    # ---- housing, heating, utilities, property
    ("供暖", "暖气", "采暖", "供热"),
    ("供暖费", "暖气费", "采暖费", "取暖费"),
    ("地暖", "地热", "地板采暖"),
    ("燃气", "天然气", "煤气"),
    ("物业服务企业", "物业公司", "物业"),
    ("业主委员会", "业委会"),
    ("公共租赁住房", "公租房"),
    ("共有产权住房", "共有产权房"),
    ("保障性住房", "保障房"),
    ("商品住房", "商品房"),
    ("二手房", "存量房"),
    ("房屋租赁", "租房", "租房子"),
    ("不动产登记", "房产登记", "房屋登记"),
    ("房屋买卖合同", "购房合同", "买房合同"),
    ("住房贷款", "房贷", "房屋贷款", "购房贷款"),
    ("继承", "遗产", "留下的房子", "留下的钱"),
    ("装修", "装修房子", "装饰装修"),
    ("老旧小区综合整治", "老旧小区改造", "老楼改造"),
    ("电梯加装", "加装电梯", "老楼加电梯"),
    # ---- household, family, children, education
    ("孩子", "娃", "小孩", "小孩子", "孩儿", "娃娃"),
    ("新生儿", "刚出生的孩子", "新生宝宝"),
    ("老年人", "老人", "老年"),
    ("高龄老人", "八十岁", "九十岁", "八十了", "九十了", "百岁老人"),
    (
        "死亡",
        "去世",
        "过世",
        "离世",
        "亡故",
        "病故",
        "人走了",
        "爸走了",
        "妈走了",
        "人没了",
        "爸没了",
        "妈没了",
        "老人没了",
    ),
    ("父母", "爸妈"),
    ("义务教育入学", "上学", "入学"),
    ("小学入学", "上小学", "小升初"),
    ("幼儿园入园", "上幼儿园", "入园"),
    ("学籍", "学生档案"),
    ("婚姻登记", "领证", "登记结婚"),
    ("离婚登记", "办离婚"),
    ("落户", "上户口", "迁户口进来"),
    ("迁出", "迁户口走", "户口迁走"),
    ("分户", "分户口"),
    # ---- vehicles and traffic
    ("机动车登记", "上牌", "车辆登记"),
    ("小客车指标", "购车指标", "车指标"),
    ("新能源小客车", "新能源车", "新能源汽车", "电动汽车", "纯电动车", "电车"),
    ("外省市机动车", "外地车", "外埠车", "外地牌照", "外地牌子", "外地车牌"),
    ("摇号", "抽签"),
    ("尾号限行", "限号", "限行"),
    ("交通违法", "违章"),
    ("罚款", "罚钱"),
    ("交通事故", "车祸", "撞车"),
    ("年检", "年审", "车检"),
    # ---- work and business
    ("劳动合同", "用工合同"),
    ("拖欠工资", "欠薪", "拖欠薪水", "不给工资", "不发工资"),
    ("就业登记", "就业备案"),
    ("失业登记", "登记失业"),
    ("失业", "被辞退", "被开除", "被裁员", "被裁了", "把我开了", "下岗"),
    ("退休年龄", "到岁数", "到年龄", "到年纪"),
    ("职业技能培训", "技能培训", "职业培训"),
    ("灵活就业人员", "灵活就业", "自由职业者"),
    ("个体工商户", "个体户"),
    ("退休", "退下来"),
    # ---- waste and environment
    ("垃圾分类", "垃圾分拣"),
    ("厨余垃圾", "湿垃圾", "剩饭剩菜", "剩菜剩饭", "吃剩的"),  # 餐厨垃圾 is restaurants'
    ("其他垃圾", "干垃圾"),
    ("可回收物", "可回收垃圾"),
    ("有害垃圾", "有毒垃圾"),
    ("宠物粪便", "猫屎", "狗屎", "猫粪", "狗粪", "宠物便便"),
    ("大件垃圾", "大件家具"),
    ("装修垃圾", "建筑垃圾"),
    # ---- health
    ("预防接种", "打疫苗", "接种疫苗"),
    ("家庭医生", "签约医生"),
    ("体检", "身体检查"),
    ("挂号", "预约看病"),
    # ---- ways of asking (colloquial → formal)
    ("怎么", "咋", "怎样", "如何", "怎么样"),
    ("怎么办", "咋办", "咋整", "咋弄", "怎么弄", "怎么整"),
    ("什么", "啥", "甚么", "啥子"),
    ("哪里", "哪儿", "啥地方", "什么地方"),
    ("多少钱", "多少费用", "收费多少"),
    ("丢失", "丢了", "掉了", "弄丢", "遗失", "找不到了"),
    ("损坏", "坏了", "弄坏"),
    ("补办", "补领", "重办", "再办一张"),
    ("进度", "动静", "进展"),
    ("审批", "批下来", "批了"),
    ("需要", "得要"),
    ("材料", "资料", "手续"),
    ("地点", "地方"),
    ("可以", "能不能", "可不可以"),
    ("立即", "马上", "立刻"),
    ("网上办理", "网上办", "线上办", "手机上办"),
)


def _merge(general: Groups, extra: Iterable[Sequence[str]]) -> Groups:
    """GENERAL followed by the city's groups. A city group that shares words with earlier
    groups joins them into one (the earliest group's canonical word stays first): a city may
    say that two things are one there (Beijing: 社会保障卡 is the 医保卡)."""
    merged: list[list[str]] = [list(g) for g in general]
    where: dict[str, int] = {w: i for i, g in enumerate(merged) for w in g}
    for group in extra:
        words = list(dict.fromkeys(w.strip() for w in group if w and w.strip()))
        if len(words) < 2:
            continue
        touched = sorted({where[w] for w in words if w in where})
        if touched:
            target = touched[0]
            for other in touched[1:]:
                for w in merged[other]:
                    merged[target].append(w)
                    where[w] = target
                merged[other] = []
        else:
            merged.append([])
            target = len(merged) - 1
        for w in words:
            if w not in where:
                merged[target].append(w)
                where[w] = target
    return tuple(tuple(g) for g in merged if len(g) >= 2)


_lock = threading.Lock()
# per database (the engine's URL): (the stored row's updated_at, the merged groups)
_cache: dict[str, tuple[datetime | None, Groups]] = {}


def _key(db_session: Session) -> str:
    bind = db_session.get_bind()
    return bind.engine.url.render_as_string(hide_password=True)


def groups(*, db_session: Session) -> Groups:
    """GENERAL and the city pack's groups (`synonyms.csv`), merged; cached per process."""
    stamp = db_session.scalar(select(CitySetting.updated_at).where(CitySetting.key == SETTING_KEY))
    key = _key(db_session)
    with _lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    city: Any = None
    if stamp is not None:
        city = db_session.scalar(select(CitySetting.value).where(CitySetting.key == SETTING_KEY))
    result = _merge(GENERAL, city_groups(city))
    with _lock:
        _cache[key] = (stamp, result)
    return result


def city_groups(value: Any) -> list[list[str]]:
    """The stored value as groups, ignoring anything malformed (a list of lists of words)."""
    if not isinstance(value, list):
        return []
    return [[w for w in g if isinstance(w, str)] for g in value if isinstance(g, list)]


def clear_cache() -> None:
    with _lock:
        _cache.clear()
