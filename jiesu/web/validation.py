"""Validation messages in Chinese: one translation layer for pydantic's errors.

Every form and the API answer a bad value with a Chinese sentence that names the field by its
label (诉求内容, 来电号码 …), never by its code name and never in pydantic's English. The API's
422 keeps the machine-readable part (`loc`, `type`, `field`) beside the Chinese `message`.

- `LABELS`: the one table of field labels (ticket shapes, sign-in and password, tokens, query
  parameters); the lifecycle table's action fields are looked up there too (`label_of`);
- `message(error)`: one pydantic error (a dict of `ValidationError.errors()`) → a sentence;
- `messages(errors)`: all of them, in order, without repeats;
- `size_text(bytes)`: an upload limit as people read it (上限 10 MB, 上限 512 KB).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

LABELS: dict[str, str] = {
    # a ticket (API intake, console intake, portal)
    "channel": "渠道",
    "content": "诉求内容",
    "title": "标题",
    "request_type": "诉求类型",
    "category_code": "事项分类",
    "address": "地址",
    "street": "所属街道（乡镇）",
    "lat": "纬度",
    "lng": "经度",
    "requester": "诉求人信息",
    "requester.name": "诉求人姓名",
    "requester.phone": "来电号码",
    "requester.confidential": "保密",
    "name": "姓名",
    "phone": "联系电话",
    "confidential": "保密",
    "window": "办不成事窗口信息",
    "window.cause": "办不成事的原因",
    "window.earlier": "此前工单",
    "photos": "现场照片",
    "form_id": "表单",
    # the call centre's telephony (jiesu/calls)
    "call_id": "通话编号",
    "caller": "主叫号码",
    "called": "被叫线路",
    "agent": "坐席",
    "started_at": "来电时间",
    "ended_at": "挂机时间",
    "url": "录音地址",
    # signing in, passwords, tokens
    "username": "用户名",
    "password": "密码",
    "old_password": "原密码",
    "new_password": "新密码",
    "repeat": "确认新密码",
    "scope_channel": "限定渠道",
    "scope_role": "限定角色",
    "days": "有效天数",
    # query and path parameters
    "period": "期间",
    "month": "月份",
    "day": "日期",
    "date": "日期",
    "since": "开始日期",
    "until": "结束日期",
    "offset": "跳过的条数",
    "limit": "条数",
    "page": "页码",
    "page_size": "每页条数",
    "size": "每页条数",
    "created_from": "受理日期起",
    "created_to": "受理日期止",
    "text": "关键词",
    "category": "事项分类",
    "kind": "类型",
    "status": "状态",
    "q": "关键词",
    "number": "工单编号",
    "numbers": "工单编号",
    "code": "编码",
    "unit": "单位",
    "district": "区",
    "version": "版本",
    "ticket_id": "工单",
    "warning_id": "预警",
    "report_id": "报告",
    "attachment_id": "附件",
    "user_id": "账号",
    "unit_id": "单位",
    "token_id": "令牌",
    "model_id": "模型",
    "action": "操作",
    # the knowledge base (jiesu/knowledge): an entry's content, its filters
    "keywords": "关键词",
    "questions": "常见问法",
    "valid_from": "生效日期",
    "valid_to": "失效日期",
    "source": "政策依据",
    "link": "链接",
    "change_note": "修改说明",
    "owner": "主管单位",
    "owner_unit_id": "主管单位",
    "expiring_within_days": "到期天数",
    "demo": "演示内容",
}
_SKIP = {"body", "query", "path", "header", "cookie", "form"}
_LATIN = re.compile(r"[A-Za-z]")
_VALUE_ERROR = re.compile(r"^(Value|Assertion) error,\s*")


def _action_labels() -> dict[str, str]:
    from jiesu.tickets.lifecycle import ACTIONS  # the action forms' fields, with their labels

    return {f.name: f.label for a in ACTIONS for f in a.fields}


_ACTION_LABELS: dict[str, str] | None = None


def label_of(loc: Iterable[Any] | str, labels: Mapping[str, str] | None = None) -> str:
    """The Chinese label of a field given by its pydantic `loc` (or a dotted name); a field
    without one reads as 该项, never as its code name."""
    global _ACTION_LABELS
    parts = loc.split(".") if isinstance(loc, str) else [str(p) for p in loc]
    parts = [p for p in parts if p not in _SKIP and not p.isdigit()]
    if _ACTION_LABELS is None:
        _ACTION_LABELS = _action_labels()
    tables = ((labels or {}), LABELS, _ACTION_LABELS)
    for start in range(len(parts)):  # the longest known name: requester.phone before phone
        name = ".".join(parts[start:])
        for table in tables:
            if name in table:
                return table[name]
    return "该项"


def zh_half(text: str) -> str:
    """The Chinese half of a "中文 / English" message, pydantic's "Value error, " dropped."""
    text = _VALUE_ERROR.sub("", text).split(" / ", 1)[0].strip()
    return text


def _count(ctx: Mapping[str, Any], key: str) -> Any:
    return ctx.get(key, "")


def message(error: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """One pydantic error as a Chinese sentence naming the field by its label."""
    kind = str(error.get("type", ""))
    loc = tuple(error.get("loc") or ())
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    label = label_of(loc, labels)
    if kind == "json_invalid":
        return "提交的内容无法解析，请检查格式"
    if kind == "missing":
        return f"请填写{label}"
    if kind == "extra_forbidden":
        return (
            f"含有不接受的项目（{label}），请删除后重试"
            if label != "该项"
            else ("含有不接受的项目，请删除后重试")
        )
    if kind in ("string_too_short", "too_short"):
        least = _count(ctx, "min_length")
        if kind == "string_too_short" and least in (1, ""):
            return f"请填写{label}"
        unit = "个字" if kind == "string_too_short" else "项"
        return f"{label}至少 {least} {unit}"
    if kind in ("string_too_long", "too_long"):
        unit = "个字" if kind == "string_too_long" else "项"
        return f"{label}不能超过 {_count(ctx, 'max_length')} {unit}"
    if kind in ("int_parsing", "int_type", "int_from_float", "int_parsing_size"):
        return f"{label}须为整数"
    if kind in ("float_parsing", "float_type", "decimal_parsing", "decimal_type", "finite_number"):
        return f"{label}须为数字"
    if kind in ("bool_parsing", "bool_type"):
        return f"{label}须为“是”或“否”"
    if kind in ("string_type", "string_unicode", "string_sub_type"):
        return f"{label}须为文字"
    if kind in ("enum", "literal_error"):
        return f"{label}的取值无效，请从列表中选择"
    if kind in ("greater_than_equal", "greater_than"):
        limit = ctx.get("ge", ctx.get("gt", ""))
        return f"{label}须{'不小于' if kind == 'greater_than_equal' else '大于'} {limit}"
    if kind in ("less_than_equal", "less_than"):
        limit = ctx.get("le", ctx.get("lt", ""))
        return f"{label}须{'不大于' if kind == 'less_than_equal' else '小于'} {limit}"
    if kind.startswith(("date_", "datetime_")):
        return f"{label}须为日期，如 2026-10-01"
    if kind == "string_pattern_mismatch":
        return f"{label}格式不对"
    if kind in ("dict_type", "model_type", "model_attributes_type", "list_type", "is_instance_of"):
        return f"{label}的格式不对" if label != "该项" else "提交的内容格式不对，请检查后重试"
    if kind in ("value_error", "assertion_error"):
        text = zh_half(str(error.get("msg", "")))
        if text and not _LATIN.search(text):
            if label == "该项" or text.startswith(label):
                return text
            return f"{label}：{text}"
    return f"{label}填写有误" if label != "该项" else "提交的内容有误，请检查后重试"


def messages(
    errors: Iterable[Mapping[str, Any]], labels: Mapping[str, str] | None = None
) -> list[str]:
    """Every error's sentence, in order, each once."""
    return list(dict.fromkeys(message(e, labels) for e in errors))


def size_text(limit: int) -> str:
    """An upload limit as people read it: 10 MB, 1.5 MB, 512 KB (never "0 MB")."""
    mb = limit / 1024 / 1024
    if mb >= 1:
        return f"{mb:.0f} MB" if mb == int(mb) or mb >= 10 else f"{mb:.1f} MB"
    return f"{max(1, round(limit / 1024))} KB"


__all__ = ["LABELS", "label_of", "message", "messages", "size_text", "zh_half"]
