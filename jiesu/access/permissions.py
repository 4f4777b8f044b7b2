"""Who may open which route: the one table the API and the console both read.

Every route names one permission (`web/deps.require`); this module says which roles hold it.
What a role may do *to a ticket* is finer and lives in the lifecycle table
(`tickets/lifecycle.py`); which tickets a unit sees lives in `policy.visible` (the org tree).
A test walks every route of the app and checks it against this table for every role.
"""

from __future__ import annotations

from jiesu.citypack.parse import ROLES  # the roles a city pack may give its users

ALL = frozenset(ROLES)

PERMISSIONS: dict[str, frozenset[str]] = {
    # Signed in, any role: own account, the org and taxonomy lists.
    "signed_in": ALL,
    # Tickets the org tree lets the user see (the service centre sees all).
    "tickets.read": ALL,
    # 受理: take a request in.
    "tickets.intake": frozenset({"agent", "dispatcher", "admin"}),
    # Take a lifecycle action; the lifecycle table then checks role, relation and state.
    "tickets.act": ALL - {"analyst"},
    # Ask for the requester's name and phone; policy.sees_identity decides, every reveal logged.
    "tickets.reveal": ALL,
    # The call centre's telephony reports calls (a system token scoped to channel phone, of a
    # service-centre account: jiesu/calls/views.py); the agent's console pops them.
    "calls.telephony": frozenset({"agent", "admin"}),
    # The SMS gateway posts citizens' replies (短信回访): a system token scoped to channel sms,
    # of a callback agent's account (jiesu/callbacks/views.py).
    "sms.inbound": frozenset({"callback_agent", "admin"}),
    # Workbenches.
    "workbench.intake": frozenset({"agent", "admin"}),
    "workbench.dispatch": frozenset({"dispatcher", "admin"}),
    "workbench.unit": frozenset({"handler", "unit_admin"}),
    "workbench.callback": frozenset({"callback_agent", "admin"}),
    "workbench.supervision": frozenset({"supervisor", "admin"}),
    # A unit admin (联络员) manages the handlers of their own unit (SPEC §1).
    "unit.users": frozenset({"unit_admin"}),
    # Assessment and analysis (SPEC §5–6): the dashboard (大屏), the three rates and rankings
    # (a unit sees its own figures), reports, early warnings and proactive tasks.
    "dashboard.view": frozenset({"dispatcher", "supervisor", "analyst", "admin"}),
    "assessment.view": frozenset({"supervisor", "analyst", "admin", "unit_admin"}),
    "reports.view": frozenset({"supervisor", "analyst", "admin", "unit_admin"}),
    "reports.build": frozenset({"analyst", "admin"}),
    "warnings.view": frozenset({"dispatcher", "supervisor", "analyst", "admin"}),
    # A task is taken in (the analyst too: SPEC §1) and dispatched (dispatchers).
    "warnings.handle": frozenset({"dispatcher", "analyst", "admin"}),
    # The knowledge base (知识库, SPEC §7): every account reads and searches it and may report an
    # entry wrong or outdated; a department drafts and updates its own entries (the centre any);
    # the service centre reviews and publishes; suggested entries go to their departments.
    "knowledge.read": ALL,
    "knowledge.flag": ALL,
    "knowledge.edit": frozenset({"handler", "unit_admin", "supervisor", "admin"}),
    "knowledge.review": frozenset({"supervisor", "admin"}),
    "knowledge.suggestions": frozenset({"handler", "unit_admin", "supervisor", "analyst", "admin"}),
    "knowledge.import": frozenset({"admin"}),
    # Administration: users, units, tokens, the audit log, the city's settings.
    "admin": frozenset({"admin"}),
}

# Where each role lands after signing in.
HOME: dict[str, str] = {
    "agent": "/console/intake",
    "dispatcher": "/console/dispatch",
    "handler": "/console/inbox",
    "unit_admin": "/console/inbox",
    "callback_agent": "/console/callbacks",
    "supervisor": "/console/supervision",
    "analyst": "/console/tickets",
    "admin": "/console/admin/users",
}


def allows(permission: str, role: str) -> bool:
    return role in PERMISSIONS[permission]
