"""The interface's Chinese names for codes (one message catalogue): no page shows a raw code."""

from __future__ import annotations

from jiesu.tickets.lifecycle import (
    NOT_SOLVABLE_REASONS,
    REJECT_REASONS,
    REPLY_RESULTS,
    SATISFACTION,
    TRANSFER_TO,
    WINDOW_CAUSES,
)

CHANNEL_NAMES = {
    "phone": "电话",
    "web": "网站",
    "app": "移动应用",
    "wechat": "微信",
    "sms": "短信",
    "email": "电子邮件",
    "open311": "Open311 接口",
    "collection_point": "说事点",
    "window": "办不成事窗口",
    "import": "历史导入",
    "proactive": "主动治理",
}
UNIT_KIND_NAMES = {
    "city": "市级",
    "district": "区",
    "street": "街道（乡镇）",
    "community": "社区（村）",
    "grid": "网格",
    "department": "部门",
    "company": "公共服务企业",
}
ASSIGNMENT_ROLE_NAMES = {"lead": "主办", "co_handler": "协办", "summoned": "吹哨报到"}
END_REASONS = {
    "returned": "退单",
    "escalated": "提级",
    "redispatched": "改派",
    "closed": "结束",
    "reopened": "重办",
}
AUDIT_ACTIONS = {
    "login": "登录",
    "login_failed": "登录失败",
    "login_locked": "锁定期间尝试登录",
    "lockout": "账号锁定",
    "logout": "退出",
    "reveal": "查看诉求人信息",
    "track_failed": "市民查询码错误",
    "password_change": "修改密码",
    "password_reset": "重置密码",
    "user_create": "新建用户",
    "user_update": "修改用户",
    "unit_create": "新建单位",
    "unit_update": "修改单位",
    "token_issue": "签发系统令牌",
    "token_revoke": "吊销系统令牌",
    "open311_key_issue": "签发 Open311 密钥",
    "open311_key_revoke": "吊销 Open311 密钥",
    "sms_opt_out": "登记短信退订",
    "sms_opt_out_undone": "撤销短信退订",
    "notice_email_saved": "设置单位通知邮箱",
    "notice_email_deleted": "删除单位通知邮箱",
    "calendar_set": "设置调休日历",
    "calendar_remove": "删除调休日历",
    "unit_move": "调整单位隶属",
    "unit_merge": "合并单位",
    "category_update": "修改事项分类",
    "category_create": "新增事项分类",
    "catalogue_save": "修改派单目录",
    "settings_update": "修改考核与预警参数",
    "pack_export": "导出城市包",
    "export": "导出列表",
    "kb_publish": "发布知识库条目",
    "kb_return": "退回知识库条目",
    "kb_withdraw": "下架知识库条目",
}
REQUEST_TYPE_NAMES = {
    "consult": "咨询",
    "help": "求助",
    "complain": "投诉",
    "report": "举报",
    "suggest": "建议",
    "praise": "表扬",
}
CHOICE_LABELS: dict[str, dict[str, str]] = {
    "result": REPLY_RESULTS,
    "reason": NOT_SOLVABLE_REASONS | REJECT_REASONS,
    "satisfaction": SATISFACTION,
    "to": TRANSFER_TO,
    "window_cause": WINDOW_CAUSES,
}

# Early warnings (预警, SPEC §6): the kinds the detectors raise.
WARNING_KIND_NAMES = {
    "burst": "诉求激增",
    "repeat": "重复诉求",
    "bounce": "反复退单",
    "inaction": "履职下滑",
    "topic": "新兴话题",
    "theme": "每月一题候选",
}
