"""The words of grid management (网格化管理), defined once: statuses, roles, priorities,
deadline steps, satisfaction, reporter types and intake channels.

Why here, in ``core``: users and access rules (``core.users``, the HTTP layer), the category
catalogue, the case aggregate, the read models and — through ``GET /v1/vocabulary`` — the
pages all speak these words, and ``core`` is the one layer all of them may import. The
*actions* a case knows are not listed here: each is declared once, with its rules, in the
action registry (``aggregates.actions``), and its name and label come from there.

Values are stable snake_case English: they are stored in events and read models. Labels are
Simplified Chinese (zh-Hans), the language of the mainland centres this system serves.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class Status(StrEnum):
    """Status of a case (案件状态) in the closed loop (闭环)."""

    reported = "reported"  # 已上报(待立案)
    filed = "filed"  # 已立案(待派遣)
    rejected = "rejected"  # 不予立案 — terminal 终态
    merged = "merged"  # 已合并(重复) — terminal 终态
    dispatched = "dispatched"  # 已派遣(待接单)
    in_progress = "in_progress"  # 处置中
    returned = "returned"  # 已退单(待重派)
    suspended = "suspended"  # 挂账
    awaiting_verification = "awaiting_verification"  # 待核查
    verified = "verified"  # 核查通过(待结案)
    closed = "closed"  # 已结案


STATUS_LABELS: dict[Status, str] = {
    Status.reported: "已上报(待立案)",
    Status.filed: "已立案(待派遣)",
    Status.rejected: "不予立案",
    Status.merged: "已合并(重复)",
    Status.dispatched: "已派遣(待接单)",
    Status.in_progress: "处置中",
    Status.returned: "已退单(待重派)",
    Status.suspended: "挂账",
    Status.awaiting_verification: "待核查",
    Status.verified: "核查通过(待结案)",
    Status.closed: "已结案",
}

#: Statuses a case never leaves by an ordinary step (终态); closed may still get a return
#: visit (回访) and, after a dissatisfied one, be reopened (重办) — the registry says so.
TERMINAL: frozenset[Status] = frozenset({Status.rejected, Status.merged, Status.closed})
#: The status every case starts in.
INITIAL_STATUS = Status.reported

Role = Literal[
    "inspector",  # 网格员 / 信息采集员
    "call_taker",  # 受理员
    "shift_leader",  # 值班长
    "dispatcher",  # 派遣员
    "handler",  # 处置部门
    "supervisor",  # 督办领导
    "auditor",  # 审计员
    "admin",  # 系统管理员
    "system",  # 系统(时限监控 / 接入)
]
ROLES: tuple[Role, ...] = get_args(Role)
#: Roles a person can sign in with (``system`` is the watcher and the intake).
HUMAN_ROLES: tuple[Role, ...] = tuple(r for r in ROLES if r != "system")
ROLE_LABELS: dict[str, str] = {
    "inspector": "网格员",
    "call_taker": "受理员",
    "shift_leader": "值班长",
    "dispatcher": "派遣员",
    "handler": "处置部门",
    "supervisor": "督办领导",
    "auditor": "审计员",
    "admin": "系统管理员",
    "system": "系统",
}

Priority = Literal["urgent", "important", "ordinary"]  # 紧急 / 重要 / 一般
#: Priorities from the most to the least pressing; "raising" a priority moves left.
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
PRIORITY_LABELS: dict[str, str] = {"urgent": "紧急", "important": "重要", "ordinary": "一般"}

#: Deadline steps (时限环节). ``file``, ``dispatch``, ``handle`` and ``verify`` have limits per
#: category and priority; ``review`` is a suspension's review date (挂账复核), set by hand.
Step = Literal["file", "dispatch", "handle", "review", "verify"]
STEPS: tuple[Step, ...] = get_args(Step)
#: Steps whose limit the category catalogue defines.
LIMITED_STEPS: tuple[Step, ...] = ("file", "dispatch", "handle", "verify")
STEP_LABELS: dict[str, str] = {
    "file": "立案",
    "dispatch": "派遣",
    "handle": "处置",
    "review": "挂账复核",
    "verify": "核查",
}

Satisfaction = Literal["satisfied", "basically_satisfied", "dissatisfied"]
SATISFACTIONS: tuple[Satisfaction, ...] = get_args(Satisfaction)
SATISFACTION_LABELS: dict[str, str] = {
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "dissatisfied": "不满意",
}

#: Who reported (上报人类型).
ReporterType = Literal["inspector", "citizen", "open311"]
REPORTER_TYPES: tuple[ReporterType, ...] = get_args(ReporterType)
REPORTER_TYPE_LABELS: dict[str, str] = {
    "inspector": "网格员",
    "citizen": "市民",
    "open311": "Open311 客户端",
}

#: Intake channel of a report (来源).
Source = Literal["inspector_app", "hotline", "open311", "api"]
SOURCES: tuple[Source, ...] = get_args(Source)
SOURCE_LABELS: dict[str, str] = {
    "inspector_app": "网格员上报",
    "hotline": "热线",
    "open311": "Open311",
    "api": "接口",
}


#: The six must-visit household flags (六必访): a household with any of them is visited on a
#: schedule (``deploy/cities/<city>/visits.json``). Stable values, zh-Hans labels.
CareFlag = Literal[
    "hardship",  # 困难
    "dispute",  # 矛盾纠纷
    "unemployed",  # 下岗失业
    "serious_illness",  # 重大疾病
    "released_or_corrected",  # 刑释解教 / 社区矫正
    "elderly_alone",  # 孤寡老人
]
CARE_FLAGS: tuple[CareFlag, ...] = get_args(CareFlag)
CARE_FLAG_LABELS: dict[str, str] = {
    "hardship": "困难",
    "dispute": "矛盾纠纷",
    "unemployed": "下岗失业",
    "serious_illness": "重大疾病",
    "released_or_corrected": "刑释解教/社区矫正",
    "elderly_alone": "孤寡老人",
}
#: Flags only roles with a need to know may see (gateways/http/household_access.py).
SENSITIVE_CARE_FLAGS: frozenset[str] = frozenset({"serious_illness", "released_or_corrected"})


def terms() -> dict[str, list[dict[str, str]]]:
    """Every list above as ``[{value, label}]`` in its order, for ``GET /v1/vocabulary``."""

    def pairs(values: tuple[str, ...], labels: dict[str, str]) -> list[dict[str, str]]:
        return [{"value": str(v), "label": labels[str(v)]} for v in values]

    return {
        "statuses": [{"value": s.value, "label": STATUS_LABELS[s]} for s in Status],
        "terminal_statuses": [{"value": s.value, "label": STATUS_LABELS[s]} for s in Status
                              if s in TERMINAL],
        "roles": pairs(HUMAN_ROLES, ROLE_LABELS),
        "priorities": pairs(PRIORITIES, PRIORITY_LABELS),
        "steps": pairs(STEPS, STEP_LABELS),
        "satisfactions": pairs(SATISFACTIONS, SATISFACTION_LABELS),
        "reporter_types": pairs(REPORTER_TYPES, REPORTER_TYPE_LABELS),
        "sources": pairs(SOURCES, SOURCE_LABELS),
        "care_flags": pairs(CARE_FLAGS, CARE_FLAG_LABELS),
    }
