"""The case state machine as one table: statuses, actions, transitions, roles.

Why one table: every rule about "may this action happen now, and by whom" lives here and
nowhere else. The `Case` aggregate, the HTTP layer (which buttons to show, which error body to
return), the property tests and the docs all read these dictionaries, so a rule is changed in
one place and the change is visible everywhere.

Terminology (Chinese next to English, as users of 網格化管理 systems say it):

* status 狀態 — where the case is in the closed loop (閉環),
* action 操作 — one command a person or the system performs on a case,
* role 角色 — a hat a user wears; one person may hold several (a small district's shift
  leader 值班長 is often also its dispatcher 派遣員).

The table answers only the status-level question. A few finer guards depend on the case's data
(an extension can be approved only while one is pending, a return visit happens once); those are
applied by `Case.available_actions`, which starts from `allowed_actions` here.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Status of a case (案件狀態). Values are stable snake_case English stored in events."""

    reported = "reported"  # 已上報(待立案)
    filed = "filed"  # 已立案(待派遣)
    rejected = "rejected"  # 不予立案 — terminal 終態
    merged = "merged"  # 已合併(重複) — terminal 終態
    dispatched = "dispatched"  # 已派遣(待接單)
    in_progress = "in_progress"  # 處置中
    returned = "returned"  # 已退單(待重派)
    suspended = "suspended"  # 掛賬
    awaiting_verification = "awaiting_verification"  # 待核查
    verified = "verified"  # 核查通過(待結案)
    closed = "closed"  # 已結案


STATUS_ZH: dict[Status, str] = {
    Status.reported: "已上報(待立案)",
    Status.filed: "已立案(待派遣)",
    Status.rejected: "不予立案",
    Status.merged: "已合併(重複)",
    Status.dispatched: "已派遣(待接單)",
    Status.in_progress: "處置中",
    Status.returned: "已退單(待重派)",
    Status.suspended: "掛賬",
    Status.awaiting_verification: "待核查",
    Status.verified: "核查通過(待結案)",
    Status.closed: "已結案",
}


class Action(StrEnum):
    """Command kinds on a case (操作). Declaration order follows the closed loop and is the
    order in which `allowed_actions` lists them (so UI buttons come out in loop order)."""

    report = "report"  # 上報 / 受理登記 — creates the case
    file = "file"  # 立案
    reject = "reject"  # 不予立案 / 不予受理
    mark_duplicate = "mark_duplicate"  # 標記重複(合併)
    link_reporter = "link_reporter"  # 關聯重複上報人
    dispatch = "dispatch"  # 派遣 / 重派
    accept = "accept"  # 接單
    return_case = "return_case"  # 退單 / 回退
    request_extension = "request_extension"  # 延期申請
    approve_extension = "approve_extension"  # 批准延期
    refuse_extension = "refuse_extension"  # 駁回延期
    suspend = "suspend"  # 掛賬
    resume = "resume"  # 恢復處置(解除掛賬)
    report_result = "report_result"  # 處置反饋
    verify_pass = "verify_pass"  # 核查通過
    verify_fail = "verify_fail"  # 核查不通過 → 返工
    escalate = "escalate"  # 上提一級
    supervise = "supervise"  # 督辦
    close = "close"  # 結案
    return_visit = "return_visit"  # 回訪
    mark_warning = "mark_warning"  # 黃燈預警
    mark_overdue = "mark_overdue"  # 紅燈超期


ACTION_ZH: dict[Action, str] = {
    Action.report: "上報",
    Action.file: "立案",
    Action.reject: "不予立案",
    Action.mark_duplicate: "標記重複",
    Action.link_reporter: "關聯上報人",
    Action.dispatch: "派遣",
    Action.accept: "接單",
    Action.return_case: "退單",
    Action.request_extension: "延期申請",
    Action.approve_extension: "批准延期",
    Action.refuse_extension: "駁回延期",
    Action.suspend: "掛賬",
    Action.resume: "恢復處置",
    Action.report_result: "處置反饋",
    Action.verify_pass: "核查通過",
    Action.verify_fail: "核查不通過(返工)",
    Action.escalate: "上提一級",
    Action.supervise: "督辦",
    Action.close: "結案",
    Action.return_visit: "回訪",
    Action.mark_warning: "預警",
    Action.mark_overdue: "超期",
}

#: The action that creates a case and the status it starts in. `report` appears in no row of
#: `TRANSITIONS` because there is no "before" status; role permission still applies to it.
INITIAL_ACTION = Action.report
INITIAL_STATUS = Status.reported

#: Statuses from which nothing but what their row lists may happen (終態).
TERMINAL: frozenset[Status] = frozenset({Status.rejected, Status.merged, Status.closed})

# Actions allowed in every non-terminal status without moving it (None = stays):
# supervision 督辦, linking a duplicate reporter, and the SLA watcher's traffic lights.
_ANYTIME: dict[Action, Status | None] = {
    Action.supervise: None,
    Action.link_reporter: None,
    Action.mark_warning: None,
    Action.mark_overdue: None,
}

#: status → {action → next status, or None when the status does not change}.
#: Escalation (上提一級) always lands in `filed` at the higher level: that level's command
#: centre now owns dispatch. verify_fail returns to `dispatched` (same department, 返工).
TRANSITIONS: dict[Status, dict[Action, Status | None]] = {
    Status.reported: {
        Action.file: Status.filed,
        Action.reject: Status.rejected,
        Action.mark_duplicate: Status.merged,
        **_ANYTIME,
    },
    Status.filed: {
        Action.dispatch: Status.dispatched,
        Action.reject: Status.rejected,
        Action.mark_duplicate: Status.merged,
        Action.escalate: Status.filed,
        **_ANYTIME,
    },
    Status.dispatched: {
        Action.accept: Status.in_progress,
        Action.return_case: Status.returned,
        Action.escalate: Status.filed,
        **_ANYTIME,
    },
    Status.in_progress: {
        Action.report_result: Status.awaiting_verification,
        Action.request_extension: None,
        Action.approve_extension: None,
        Action.refuse_extension: None,
        Action.suspend: Status.suspended,
        Action.return_case: Status.returned,
        Action.escalate: Status.filed,
        **_ANYTIME,
    },
    Status.suspended: {
        Action.resume: Status.in_progress,
        Action.escalate: Status.filed,
        **_ANYTIME,
    },
    Status.returned: {
        Action.dispatch: Status.dispatched,
        Action.reject: Status.rejected,
        Action.escalate: Status.filed,
        **_ANYTIME,
    },
    Status.awaiting_verification: {
        Action.verify_pass: Status.verified,
        Action.verify_fail: Status.dispatched,
        **_ANYTIME,
    },
    Status.verified: {
        Action.close: Status.closed,
        **_ANYTIME,
    },
    Status.closed: {
        Action.return_visit: None,
    },
    Status.rejected: {},
    Status.merged: {},
}

ROLES: tuple[str, ...] = (
    "inspector",
    "call_taker",
    "shift_leader",
    "dispatcher",
    "handler",
    "supervisor",
    "auditor",
    "admin",
    "system",
)

ROLE_ZH: dict[str, str] = {
    "inspector": "網格員 / 信息採集員",
    "call_taker": "受理員",
    "shift_leader": "值班長",
    "dispatcher": "派遣員",
    "handler": "處置部門",
    "supervisor": "督辦領導",
    "auditor": "審計員",
    "admin": "系統管理員",
    "system": "系統(時限監控 / 接入)",
}

_DISPATCHER: frozenset[Action] = frozenset(
    {
        Action.file,
        Action.reject,
        Action.mark_duplicate,
        # The dispatcher who merges a duplicate also links its reporter to the original.
        Action.link_reporter,
        Action.dispatch,
        Action.escalate,
        Action.close,
    }
)

#: role → actions it may perform, regardless of status (DOMAIN.md's roles table).
ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    # 網格員: reports in own grids, verifies fixes on site (核查).
    "inspector": frozenset({Action.report, Action.verify_pass, Action.verify_fail}),
    # 受理員: registers hotline reports, may refuse to accept (不予受理), does the 回訪.
    "call_taker": frozenset({Action.report, Action.reject, Action.return_visit}),
    # 值班長: files and closes, approves extensions and suspensions; in a small district the
    # same person also dispatches, so the dispatcher's actions are included.
    "shift_leader": _DISPATCHER
    | frozenset(
        {
            Action.approve_extension,
            Action.refuse_extension,
            Action.suspend,
            Action.resume,
        }
    ),
    # 派遣員: files, dispatches / re-dispatches, escalates, closes.
    "dispatcher": _DISPATCHER,
    # 處置部門: accepts, returns a mis-dispatch, asks for time, may park (掛賬) with a reason
    # and review date, reports the result.
    "handler": frozenset(
        {
            Action.accept,
            Action.return_case,
            Action.request_extension,
            Action.report_result,
            Action.suspend,
            Action.resume,
        }
    ),
    # 督辦: supervision orders, escalation, and the higher approver for extra extensions.
    "supervisor": frozenset(
        {
            Action.supervise,
            Action.escalate,
            Action.approve_extension,
            Action.refuse_extension,
        }
    ),
    # 審計員 reads everything and changes nothing; admin edits configuration, not cases.
    "auditor": frozenset(),
    "admin": frozenset(),
    # The intake (Open311 / API) and the SLA watcher (時限監控).
    "system": frozenset(
        {
            Action.report,
            Action.escalate,
            Action.mark_warning,
            Action.mark_overdue,
            Action.link_reporter,
        }
    ),
}

_ORDER: dict[Action, int] = {a: i for i, a in enumerate(Action)}


def is_terminal(status: Status) -> bool:
    """True for 終態 (rejected, merged, closed): the case left the active queue."""
    return status in TERMINAL


def role_may(role: str | None, action: Action) -> bool:
    """Whether `role` may ever perform `action` (unknown roles may do nothing)."""
    if role is None:
        return False
    return action in ROLE_ACTIONS.get(role, frozenset())


def next_status(status: Status, action: Action) -> Status:
    """Status after `action` from `status`; raises KeyError when the table forbids it."""
    target = TRANSITIONS[status][action]
    return status if target is None else target


def allowed_actions(status: Status, role: str | None = None) -> list[Action]:
    """Actions the table allows in `status`, optionally narrowed to what `role` may do.

    Sorted in `Action` declaration order (closed-loop order), so the list is stable for UI
    buttons and error bodies. An unknown role gets an empty list rather than an exception:
    the caller asked "what may this person do", and the honest answer is "nothing".
    """
    actions: list[Action] = list(TRANSITIONS[Status(status)])
    if role is not None:
        permitted = ROLE_ACTIONS.get(role, frozenset())
        actions = [a for a in actions if a in permitted]
    return sorted(actions, key=_ORDER.__getitem__)
