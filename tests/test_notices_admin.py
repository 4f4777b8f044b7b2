"""系统管理 → 通知设置: SMS on or off, the templates as they read, opt-outs shown masked with undo,
units' notice e-mail addresses. Who may open it: tests/test_permissions.py (admin only)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_console_pages import console_login

from jiesu.auth.models import AuditLog
from jiesu.db.engine import Database
from jiesu.notices.models import SmsOptOut, UnitNoticeEmail

PHONE = "13812345678"


def test_the_admin_registers_an_opt_out_sees_it_masked_and_undoes_it(
    db: Database, client: TestClient
) -> None:
    csrf = console_login(client, "admin1")
    r = client.post("/console/admin/notices/opt-outs", data={"csrf_token": csrf,
                    "phone": "138 1234 5678"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    page = client.get("/console/admin/notices")
    assert page.status_code == 200
    assert "138****5678" in page.text and PHONE not in page.text
    assert "管理员登记" in page.text
    with db.read() as s:
        row = s.scalars(select(SmsOptOut)).one()
        assert row.phone == PHONE
        logged = s.scalars(select(AuditLog).where(AuditLog.action == "sms_opt_out")).one()
        assert logged.detail == {"target": "138****5678"}
    audit_page = client.get("/console/admin/audit").text
    assert "登记短信退订" in audit_page and PHONE not in audit_page
    r = client.post(f"/console/admin/notices/opt-outs/{row.id}/undo", data={"csrf_token": csrf},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    with db.read() as s:
        assert s.scalars(select(SmsOptOut)).all() == []
    assert "暂无退订号码" in client.get("/console/admin/notices").text
    r = client.post("/console/admin/notices/opt-outs", data={"csrf_token": csrf, "phone": "abc"})
    assert r.status_code == 422 and "号码无效" in r.text


def test_sms_and_email_say_they_are_off_without_a_gateway_and_smtp(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JIESU_SMS_GATEWAY_URL", raising=False)
    monkeypatch.delenv("JIESU_SMTP_HOST", raising=False)
    console_login(client, "admin1")
    page = client.get("/console/admin/notices").text
    assert "未配置短信网关" in page and "未配置邮件服务器" in page
    assert "受理回执" in page and "【12345】" in page  # the default templates, as they read
    monkeypatch.setenv("JIESU_SMS_GATEWAY_URL", "http://sms.example.gov.cn/send")
    page = client.get("/console/admin/notices").text
    assert re.search(r"已开启</span> 经短信网关 <code>sms.example.gov.cn</code>", page)


def test_a_unit_email_is_added_with_its_kinds_and_deleted(db: Database, client: TestClient) -> None:
    csrf = console_login(client, "admin1")
    r = client.post("/console/admin/notices/emails", data={
        "csrf_token": csrf, "unit": "东一街道 S11", "address": "dongyi@example.gov.cn",
        "kinds": ["dispatch", "overdue"]}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    page = client.get("/console/admin/notices").text
    assert "dongyi@example.gov.cn" in page and "派单、超期提醒" in page
    again = client.post("/console/admin/notices/emails", data={
        "csrf_token": csrf, "unit": "S11", "address": "dongyi@example.gov.cn"})  # fmt: skip
    assert again.status_code == 422 and "该单位已有这个邮箱" in again.text
    bad = client.post("/console/admin/notices/emails", data={
        "csrf_token": csrf, "unit": "S11", "address": "x@y.cn", "kinds": ["birthday"]})  # fmt: skip
    assert bad.status_code == 422 and "未知通知类型" in bad.text
    with db.read() as s:
        row = s.scalars(select(UnitNoticeEmail)).one()
        assert row.kinds == ["dispatch", "overdue"]
    r = client.post(f"/console/admin/notices/emails/{row.id}/delete", data={"csrf_token": csrf},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    assert "暂无单位登记通知邮箱" in client.get("/console/admin/notices").text
