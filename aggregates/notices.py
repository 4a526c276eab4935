"""Who hears about what (通知规则): the notices one recorded event causes.

Pure: an event's type and facts, and what is known of its case (grid, department, source,
description), give the notices and their audiences (``dept.<code>``, ``grid.<code>``,
``role.<role>``). The notifier (``gateways/notify.py``) stores, pushes and delivers them.

==========================  ======================================  ==========================
event                       kind                                    audience
==========================  ======================================  ==========================
Dispatched                  ``new_dispatch`` 新派遣 / 重派          the department
ResultReported              ``recheck_task`` 核查任务               the grid's inspector(s)
VerificationFailed          ``returned`` 返工 (back to the dept)    the department
Returned (退单)             ``returned`` 退单 (back to dispatch)    dispatchers, shift leaders
WarningMarked (黄灯 80 %)   ``deadline_approaching`` 即将超期       whoever owns the step
OverdueMarked (红灯)        ``overdue`` 已超期                      whoever owns the step
ExtensionRequested          ``extension_requested`` 延期申请        shift leaders
ExtensionApproved/Refused   ``extension_decided`` 延期审批          the department
Closed (due a visit)        ``return_visit_due`` 待回访             call-takers
ReturnVisited (不满意)      ``reopen_decision`` 重办或不予重办      shift leaders
==========================  ======================================  ==========================

Household visits (六必访, :func:`visit_reminder`): not caused by an event but by time, like the
SLA watcher's lights. A household's running visit deadline turning yellow (80 % of the
interval) gives ``visit_due`` 走访临期, passing due gives ``visit_overdue`` 走访逾期; both go to
the household's responsible inspector (``user.<id>``), else to its grid's team
(``grid.<code>``). One of each per visit deadline: the watcher's pass keeps a ledger
(``projections/notifications.py``, ``visit_reminders``). The text names the household number
and address only — never its flags, members or findings.

Reporters (by text message, :func:`reporter_notices`): ``filed`` when the case is filed,
``closed`` when it is closed, ``return_visit_due`` on closing when the visit rule
(``aggregates/visits.py``) makes a return visit due.

"Whoever owns the step": handle / review → the department, verify → the grid's inspector,
file / dispatch → dispatchers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aggregates.visits import DEFAULT_RULE, VisitRule


@dataclass
class Notice:
    kind: str
    audience: list[str]
    body: str
    data: dict[str, Any] = field(default_factory=dict)


def owner(step: str | None, case: Mapping[str, Any]) -> list[str]:
    """Who must act before the running deadline of ``step``."""
    if step in ("handle", "review") and case.get("department"):
        return [f"dept.{case['department']}"]
    if step == "verify":
        return [f"grid.{case['grid']}"]
    return ["role.dispatcher"]


def notices_for(
    env: Mapping[str, Any], case: Mapping[str, Any], rule: VisitRule = DEFAULT_RULE,
) -> list[Notice]:
    """The notices one event causes, given the case facts known before it (``rule``: which
    closed cases are due a return visit, ``aggregates/visits.py``)."""
    etype, data = env["type"], env.get("data") or {}
    reason = env.get("reason")
    desc = (case.get("description") or "")[:80]
    if etype == "Dispatched":
        verb = "重派" if data.get("redispatch") else "派遣"
        return [Notice(
            "new_dispatch", [f"dept.{data.get('department')}"], f"{verb}: {desc}",
            {"department": data.get("department"), "due": data.get("due"),
             "priority": data.get("priority")},
        )]
    if etype == "ResultReported":
        return [Notice(
            "recheck_task", [f"grid.{case['grid']}"],
            f"请到现场核查: {data.get('note') or desc}",
            {"grid": case["grid"], "due": data.get("due")},
        )]
    if etype == "VerificationFailed":
        return [Notice(
            "returned", [f"dept.{data.get('department') or case.get('department')}"],
            f"核查不通过, 返工: {data.get('note') or ''}",
            {"rework_number": data.get("rework_number"), "due": data.get("due")},
        )]
    if etype == "Returned":
        return [Notice(
            "returned", ["role.dispatcher", "role.shift_leader"],
            f"退单 ({data.get('department') or env.get('actor')}): {reason or ''}",
            {"department": data.get("department"), "reason": reason},
        )]
    if etype in ("WarningMarked", "OverdueMarked"):
        kind = "deadline_approaching" if etype == "WarningMarked" else "overdue"
        step = data.get("step")
        text = "即将超期" if kind == "deadline_approaching" else "已超期"
        return [Notice(kind, owner(step, case), f"{text} ({step}): {desc}",
                       {"step": step, "due": data.get("due")})]
    if etype == "ExtensionRequested":
        return [Notice(
            "extension_requested", ["role.shift_leader"],
            f"延期申请 {data.get('hours')} 小时: {reason or ''}",
            {"hours": data.get("hours"), "reason": reason},
        )]
    if etype in ("ExtensionApproved", "ExtensionRefused") and case.get("department"):
        approved = etype == "ExtensionApproved"
        return [Notice(
            "extension_decided", [f"dept.{case['department']}"],
            ("延期已批准" if approved else "延期被驳回") + (f": {reason}" if reason else ""),
            {"approved": approved, "new_due": data.get("due") if approved else None},
        )]
    if etype == "ReturnVisited" and data.get("satisfaction") == "dissatisfied":
        return [Notice(
            "reopen_decision", ["role.shift_leader"],
            f"回访不满意, 请决定重办或不予重办: {data.get('comment') or desc}",
            {"comment": data.get("comment")},
        )]
    if etype == "Closed" and rule.due(case.get("source"), case.get("reporter_phone")):
        return [Notice("return_visit_due", ["role.call_taker"], f"已结案, 请回访: {desc}")]
    return []


#: What a reporter's text message says, per kind (``reporter_notices``).
REPORTER_KINDS: dict[str, str] = {
    "filed": "立案通知", "closed": "办结通知", "return_visit_due": "回访提示",
}


def reporter_notices(
    env: Mapping[str, Any], case: Mapping[str, Any], rule: VisitRule = DEFAULT_RULE,
) -> list[Notice]:
    """The messages one event sends to the case's reporter (短信, audience ``reporter``):
    when the case is filed, when it is closed, and — on closing, when the visit rule
    (``aggregates/visits.py``) makes it due — that a return visit will follow. Only citizens
    who left a phone; an inspector's own reports send nothing. Texts name the case number and
    nothing the phone's holder did not say (no staff, no department's notes)."""
    phone = (case.get("reporter_phone") or "").strip()
    if not phone or case.get("reporter_type") == "inspector":
        return []
    etype, no = env["type"], case.get("case_no")
    if etype == "Filed":
        return [Notice("filed", ["reporter"],
                       f"【12319】您反映的问题已立案, 工单号 {no}, 正在派遣处理。"
                       "凭工单号和手机号后四位可查询进度。")]
    if etype == "Closed":
        out = [Notice("closed", ["reporter"],
                      f"【12319】您反映的问题(工单 {no})已办结, 感谢您的监督。")]
        if rule.due(case.get("source"), phone):
            out.append(Notice("return_visit_due", ["reporter"],
                              f"【12319】工单 {no} 已办结, 近日我们将电话回访, 听取您的意见。"))
        return out
    return []


#: The reminders of household visits due (六必访), per kind (:func:`visit_reminder`).
VISIT_REMINDER_KINDS: dict[str, str] = {"visit_due": "走访临期", "visit_overdue": "走访逾期"}
_BEIJING = ZoneInfo("Asia/Shanghai")


def visit_reminder(household: Mapping[str, Any], now: datetime) -> Notice | None:
    """The reminder a household's running visit deadline calls for at ``now`` (None before
    its yellow light, or with no deadline running). ``household``: a register row
    (``household_no``, ``grid``, ``address``, ``inspector``, ``due_at``, ``warning_at``,
    ``archived``)."""
    due, warn = household.get("due_at"), household.get("warning_at")
    if due is None or household.get("archived"):
        return None
    if now >= due:
        kind = "visit_overdue"
    elif warn is not None and now >= warn:
        kind = "visit_due"
    else:
        return None
    inspector = household.get("inspector")
    audience = [f"user.{inspector}"] if inspector else [f"grid.{household['grid']}"]
    when = due.astimezone(_BEIJING).strftime("%Y-%m-%d %H:%M")
    lead = (f"走访已逾期 (期限 {when}), 请尽快走访" if kind == "visit_overdue"
            else f"走访临期, 请于 {when} 前走访")
    return Notice(
        kind, audience, f"{lead}: {household.get('address') or household['household_no']}",
        {"household_no": household["household_no"], "due": due.isoformat(),
         "grid": household["grid"]},
    )
