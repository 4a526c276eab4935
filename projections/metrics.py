"""Evaluation metrics (综合评价): counters per day and place, rates computed when asked.

What is stored: ``metric_counts`` holds integer *counters* (numerators and denominators),
one row per (counter, day, grid, level, department, inspector) with the grid's community and
district alongside. A metric for any jurisdiction node, period and grouping is a SUM over
these rows, then a division; a rate is never stored, so summing days, grids or departments is
always exact (averaging stored rates would not be).

Which day and which place a counter is counted on (``counted_on`` below):

* **Counts** (上报数, 立案数, 结案数, 督办数 …) are counted on the day the event happened, with
  the case's place, level and department at that moment.
* **Rates** are *cohort* ratios: numerator and denominator are counted on the day of the same
  event (the report, the filing or the dispatch the rate is about), so every rate stays
  within 0 … 100 % for any period, and later outcomes (a filing, a closure, a return) are
  added to the day the cohort started. The cohort key of a filed case follows the department
  and level currently responsible for it (re-dispatch moves it), so a department is judged on
  the cases it ended up owning.
* **Snapshot** metrics (超期未处置 …) are the state now, read from the map model, not a flow.

Days are local calendar days of :data:`METRIC_TZ` (Asia/Shanghai). Each metric's definition
(zh + en, formula, how it is counted) lives in :data:`METRICS` right here, next to the code
that counts it; the API serves it (``GET /v1/metrics/definitions``) and the page shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from typing import Any, Literal, TypedDict
from zoneinfo import ZoneInfo

import asyncpg

from core.envelope import parse_time
from projections.base import Envelope, insert_rows, json_rows, rows_of_known_cases
from projections.map import advance, iso
from projections.queue import TERMINAL

METRIC_TZ = ZoneInfo("Asia/Shanghai")
DEFINITIONS_VERSION = 1


class Counter(TypedDict):
    zh: str
    en: str
    counted_on_zh: str
    counted_on_en: str


#: Every stored counter. Names are stable (they are rows in ``metric_counts``).
COUNTERS: dict[str, Counter] = {
    "reported": {
        "zh": "上报数", "en": "Reports",
        "counted_on_zh": "上报当日", "counted_on_en": "day reported",
    },
    "valid_of_reported": {
        "zh": "有效上报数", "en": "Valid reports",
        "counted_on_zh": "上报当日(队列: 其后立案或合并为重复)",
        "counted_on_en": "day reported (cohort: later filed or merged as a duplicate)",
    },
    "filed_of_reported": {
        "zh": "上报后立案数", "en": "Reports filed",
        "counted_on_zh": "上报当日(队列: 其后立案)",
        "counted_on_en": "day reported (cohort: later filed)",
    },
    "filed": {
        "zh": "立案数", "en": "Filed",
        "counted_on_zh": "立案当日", "counted_on_en": "day filed",
    },
    "rejected": {
        "zh": "不予立案数", "en": "Rejected",
        "counted_on_zh": "不予立案当日", "counted_on_en": "day rejected",
    },
    "merged": {
        "zh": "重复合并数", "en": "Merged duplicates",
        "counted_on_zh": "合并当日", "counted_on_en": "day merged",
    },
    "dispatched": {
        "zh": "派遣数", "en": "Dispatches",
        "counted_on_zh": "派遣当日(含重派), 派往的部门与层级",
        "counted_on_en": "day dispatched (re-dispatches too), the department dispatched to",
    },
    "dispatched_on_time": {
        "zh": "按时派遣数", "en": "Dispatches on time",
        "counted_on_zh": "派遣当日: 在派遣时限内(或无时限)派出",
        "counted_on_en": "day dispatched: sent within the dispatch deadline (or none ran)",
    },
    "returned_of_dispatched": {
        "zh": "被退回的派遣数", "en": "Dispatches returned",
        "counted_on_zh": "被退回的那次派遣当日及其部门(队列)",
        "counted_on_en": "day and department of the dispatch that was returned (cohort)",
    },
    "returned": {
        "zh": "退单数", "en": "Returns",
        "counted_on_zh": "退单当日, 退单部门",
        "counted_on_en": "day returned, returning department",
    },
    "wrong_dispatches": {
        "zh": "错误派遣数", "en": "Wrong dispatches",
        "counted_on_zh": "改派他部门的重派当日", "counted_on_en": "day re-dispatched elsewhere",
    },
    "handled": {
        "zh": "处置反馈数", "en": "Results reported",
        "counted_on_zh": "处置反馈当日", "counted_on_en": "day the result was reported",
    },
    "handled_on_time": {
        "zh": "按期处置数", "en": "Results on time",
        "counted_on_zh": "处置反馈当日: 在处置时限(含延期)内",
        "counted_on_en": "day of the result: within the handling deadline (extensions count)",
    },
    "verified": {
        "zh": "核查数", "en": "Verifications",
        "counted_on_zh": "核查当日", "counted_on_en": "day verified",
    },
    "verify_failed": {
        "zh": "返工数", "en": "Reworks",
        "counted_on_zh": "核查不通过当日", "counted_on_en": "day the verification failed",
    },
    "due_to_close": {
        "zh": "应结案数", "en": "Due to close",
        "counted_on_zh": "立案当日(队列), 当前负责部门与层级; 立案后作废(不予立案/合并)者扣除",
        "counted_on_en": "day filed (cohort), department and level now responsible; "
        "cases voided after filing (rejected / merged) are taken out",
    },
    "closed_of_filed": {
        "zh": "应结已结数", "en": "Filed and closed",
        "counted_on_zh": "立案当日(队列): 其后结案",
        "counted_on_en": "day filed (cohort): later closed",
    },
    "closed_on_time_of_filed": {
        "zh": "按期结案数", "en": "Closed on time",
        "counted_on_zh": "立案当日(队列): 结案且最后一次处置反馈在时限内",
        "counted_on_en": "day filed (cohort): closed, and the last result was on time",
    },
    "closed": {
        "zh": "结案数", "en": "Closed",
        "counted_on_zh": "结案当日", "counted_on_en": "day closed",
    },
    "reopened": {
        "zh": "重办数", "en": "Reopened",
        "counted_on_zh": "回访不满意后重办当日, 重办前的层级与部门",
        "counted_on_en": "day reopened after a dissatisfied return visit, the level and "
        "department that had closed it",
    },
    "reopened_of_closed": {
        "zh": "结案后被重办数", "en": "Closings reopened",
        "counted_on_zh": "结案当日(队列)及结案时的层级与部门: 其后回访不满意而重办",
        "counted_on_en": "day closed (cohort), the level and department that closed it: "
        "later reopened after a dissatisfied return visit",
    },
    "reopen_declined": {
        "zh": "不予重办数", "en": "Reopens declined",
        "counted_on_zh": "值班长决定不予重办当日", "counted_on_en": "day the shift leader declined",
    },
    "escalations": {
        "zh": "上提数", "en": "Escalations",
        "counted_on_zh": "上提当日, 上提前的层级与部门",
        "counted_on_en": "day escalated, the level and department it left",
    },
    "supervision_orders": {
        "zh": "督办数", "en": "Supervision orders",
        "counted_on_zh": "督办当日", "counted_on_en": "day of the order",
    },
    "overdue_marks": {
        "zh": "超期次数", "en": "Overdue lights",
        "counted_on_zh": "亮红灯当日", "counted_on_en": "day the red light came on",
    },
    "warning_marks": {
        "zh": "预警次数", "en": "Warning lights",
        "counted_on_zh": "亮黄灯当日", "counted_on_en": "day the yellow light came on",
    },
    "extensions_requested": {
        "zh": "延期申请数", "en": "Extension requests",
        "counted_on_zh": "申请当日", "counted_on_en": "day requested",
    },
    "extensions_approved": {
        "zh": "批准延期数", "en": "Extensions approved",
        "counted_on_zh": "批准当日", "counted_on_en": "day approved",
    },
    "return_visits": {
        "zh": "回访数", "en": "Return visits",
        "counted_on_zh": "回访当日", "counted_on_en": "day of the visit",
    },
    "satisfied": {
        "zh": "满意", "en": "Satisfied",
        "counted_on_zh": "回访当日", "counted_on_en": "day of the visit",
    },
    "basically_satisfied": {
        "zh": "基本满意", "en": "Basically satisfied",
        "counted_on_zh": "回访当日", "counted_on_en": "day of the visit",
    },
    "dissatisfied": {
        "zh": "不满意", "en": "Dissatisfied",
        "counted_on_zh": "回访当日", "counted_on_en": "day of the visit",
    },
}

#: Counters that are not stored but read from the map model (state now).
SNAPSHOTS: dict[str, Counter] = {
    "open_now": {
        "zh": "在办案件", "en": "Open now",
        "counted_on_zh": "当前状态", "counted_on_en": "state now",
    },
    "warning_now": {
        "zh": "黄灯预警中", "en": "Yellow now",
        "counted_on_zh": "当前状态", "counted_on_en": "state now",
    },
    "overdue_now": {
        "zh": "超期未处置", "en": "Overdue open",
        "counted_on_zh": "当前状态", "counted_on_en": "state now",
    },
}

Kind = Literal["count", "rate", "snapshot"]


class Metric(TypedDict):
    zh: str
    en: str
    kind: Kind
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]
    complement: bool  # value = 1 - numerator / denominator
    formula_zh: str
    formula_en: str
    note_zh: str
    note_en: str


def _count(counter: str, note_zh: str = "", note_en: str = "") -> Metric:
    c = COUNTERS.get(counter) or SNAPSHOTS[counter]
    return {
        "zh": c["zh"],
        "en": c["en"],
        "kind": "snapshot" if counter in SNAPSHOTS else "count",
        "numerator": (counter,),
        "denominator": (),
        "complement": False,
        "formula_zh": f"{c['zh']}({c['counted_on_zh']})",
        "formula_en": f"{c['en']} ({c['counted_on_en']})",
        "note_zh": note_zh,
        "note_en": note_en,
    }


def _rate(
    zh: str,
    en: str,
    numerator: tuple[str, ...],
    denominator: tuple[str, ...],
    note_zh: str,
    note_en: str,
    complement: bool = False,
) -> Metric:
    num_zh = " + ".join(COUNTERS[c]["zh"] for c in numerator)
    num_en = " + ".join(COUNTERS[c]["en"] for c in numerator)
    den_zh = " + ".join(COUNTERS[c]["zh"] for c in denominator)
    den_en = " + ".join(COUNTERS[c]["en"] for c in denominator)
    if len(numerator) > 1:
        num_zh, num_en = f"({num_zh})", f"({num_en})"
    lead = "1 − " if complement else ""
    return {
        "zh": zh,
        "en": en,
        "kind": "rate",
        "numerator": numerator,
        "denominator": denominator,
        "complement": complement,
        "formula_zh": f"{zh} = {lead}{num_zh} ÷ {den_zh}",
        "formula_en": f"{en} = {lead}{num_en} ÷ {den_en}",
        "note_zh": note_zh,
        "note_en": note_en,
    }


#: THE definitions of the evaluation metrics of DOMAIN.md (综合评价), in display order.
METRICS: dict[str, Metric] = {
    "reports": _count("reported", "所有渠道的上报(网格员、热线、Open311)。",
                      "Reports from every channel (inspectors, hotline, Open311)."),
    "valid_report_rate": _rate(
        "有效上报率", "Valid-report rate", ("valid_of_reported",), ("reported",),
        "有效上报 = 立案 + 合并为重复(问题属实); 不予立案为无效。"
        "按上报日统计, 待立案的上报也计入分母。",
        "Valid = filed + merged as a duplicate (the problem was real); rejected reports are "
        "invalid. By day reported; reports still waiting to be filed count in the denominator.",
    ),
    "filed": _count("filed", "按立案当日统计。", "Counted on the day of filing."),
    "filing_rate": _rate(
        "立案率", "Filing rate", ("filed_of_reported",), ("reported",),
        "按上报日统计: 当期上报中已立案的比例。",
        "By day reported: the share of the period's reports that were filed.",
    ),
    "dispatched": _count("dispatched", "含退单后重派。", "Re-dispatches after a return count too."),
    "on_time_dispatch_rate": _rate(
        "按时派遣率", "On-time dispatch rate", ("dispatched_on_time",), ("dispatched",),
        "每次派遣在派遣时限(立案或退单时起算)内完成即为按时。",
        "A dispatch is on time when made within the dispatch deadline (from filing or from "
        "the return).",
    ),
    "dispatch_accuracy": _rate(
        "派遣准确率", "Dispatch accuracy", ("returned_of_dispatched",), ("dispatched",),
        "按派遣日与派往部门统计: 当期派遣中未被退单的比例。错误派遣计入派遣员, 不计入部门。",
        "By day and department of the dispatch: the share of the period's dispatches not "
        "returned. A wrong dispatch counts against the dispatcher, not the department.",
        complement=True,
    ),
    "on_time_handling_rate": _rate(
        "按期处置率", "On-time handling rate", ("handled_on_time",), ("handled",),
        "处置反馈在当时的处置时限(含批准的延期、返工重新起算)内即为按期。",
        "A result is on time when reported within the handling deadline in force (approved "
        "extensions and the restarted clock after rework included).",
    ),
    "closed": _count("closed", "按结案当日统计。", "Counted on the day of closing."),
    "closure_rate": _rate(
        "结案率", "Closure rate", ("closed_of_filed",), ("due_to_close",),
        "应结案数 = 当期立案(立案后不予立案或合并者除外)。例: 911 ÷ 972 = 93.72%。",
        "Due to close = cases filed in the period (minus those voided after filing). "
        "Example: 911 ÷ 972 = 93.72 %.",
    ),
    "on_time_closure_rate": _rate(
        "按期结案率", "On-time closure rate", ("closed_on_time_of_filed",), ("due_to_close",),
        "按期结案 = 已结案且最后一次处置反馈在处置时限内。例: 737 ÷ 972 = 75.82%。",
        "Closed on time = closed, and the last result was reported within its handling "
        "deadline. Example: 737 ÷ 972 = 75.82 %.",
    ),
    "rework_rate": _rate(
        "返工率", "Rework rate", ("verify_failed",), ("verified",),
        "核查不通过即返工(退回同一部门, 时限重新起算)。",
        "A failed on-site verification is a rework (back to the same department, the clock "
        "restarts).",
    ),
    "overdue_open": _count(
        "overdue_now", "当前亮红灯(超过当前环节时限)且未结的案件, 与所选时段无关。",
        "Open cases whose current step is past its deadline (red light), now; not bound to "
        "the period.",
    ),
    "escalations": _count("escalations", "含自动上提。", "Automatic escalations included."),
    "supervision_orders": _count("supervision_orders"),
    "reopens": _count(
        "reopened",
        "回访不满意、值班长重办(退回派遣)的案件数。重办的案件不再算作已结案, 再次结案时重新计入。",
        "Cases a shift leader reopened (back to dispatch) after a dissatisfied return visit. "
        "A reopened case no longer counts as closed until it is closed again.",
    ),
    "reopen_rate": _rate(
        "重办率", "Reopen rate", ("reopened_of_closed",), ("closed",),
        "按结案日统计: 当期结案中, 其后因回访不满意被值班长重办的比例。"
        "再次结案另计一次结案。",
        "By day closed: the share of the period's closings a shift leader later reopened after "
        "a dissatisfied return visit. Closing again counts as another closing.",
    ),
    "reopens_declined": _count(
        "reopen_declined",
        "回访不满意后, 值班长记录理由、决定不予重办的案件数。",
        "Cases a shift leader decided, with a reason, not to reopen after a dissatisfied "
        "return visit.",
    ),
    "satisfaction_rate": _rate(
        "满意率", "Satisfaction rate", ("satisfied", "basically_satisfied"), ("return_visits",),
        "回访结果为满意或基本满意的比例。",
        "Share of return visits answered satisfied or basically satisfied.",
    ),
    # Supporting figures shown with the ones above.
    "returned": _count("returned"),
    "reworks": _count("verify_failed"),
    "rejected": _count("rejected"),
    "merged": _count("merged"),
    "open_now": _count("open_now", "当前未结案件。", "Cases open now."),
    "warning_now": _count("warning_now", "当前亮黄灯(已用时限80%以上)的案件。",
                          "Cases whose current step used 80 % of its limit (yellow), now."),
    "overdue_marks": _count("overdue_marks"),
}


def compute(metric: Metric, counters: dict[str, int]) -> float | int | None:
    """The metric's value from summed counters (None when a rate has no denominator)."""
    num = sum(counters.get(c, 0) for c in metric["numerator"])
    if metric["kind"] != "rate":
        return num
    den = sum(counters.get(c, 0) for c in metric["denominator"])
    if den == 0:
        return None
    value = num / den
    return 1 - value if metric["complement"] else value


def definitions() -> dict[str, Any]:
    """What ``GET /v1/metrics/definitions`` serves."""
    # Here, not at the top: a rebuild's fold processes import this module, and the
    # households' aggregate (through the registry, eventsourcing) was a quarter of their start.
    from aggregates.households.coverage import HOUSEHOLD_METRICS

    return {
        "version": DEFINITIONS_VERSION,
        "timezone": str(METRIC_TZ),
        "rules_zh": "计数按事件发生当日统计; 比率按队列(上报、立案或派遣当日)统计, "
        "分子分母同属一个队列, 所以任何时段的比率都在 0-100% 之间; "
        "比率在查询时由计数器求得, 从不存储。",
        "rules_en": "Counts are counted on the day the event happened; rates are cohort ratios "
        "(by day of the report, filing or dispatch they are about), numerator and denominator "
        "from the same cohort, so a rate stays within 0-100 % for any period; rates are "
        "computed from the counters when asked, never stored.",
        "metrics": [{"key": k, **_jsonable(m)} for k, m in METRICS.items()],
        "counters": [{"key": k, **c} for k, c in {**COUNTERS, **SNAPSHOTS}.items()],
        # Households and care visits (六必访): figures of GET /v1/households/coverage.
        "household_metrics": [{"key": k, **d} for k, d in HOUSEHOLD_METRICS.items()],
    }


def _jsonable(metric: Metric) -> dict[str, Any]:
    out: dict[str, Any] = dict(metric)
    out["numerator"] = list(metric["numerator"])
    out["denominator"] = list(metric["denominator"])
    return out


# ------------------------------------------------------------------------- the fold


def local_day(value: Any) -> date:
    at = parse_time(value)
    assert at is not None
    return at.astimezone(METRIC_TZ).date()


@lru_cache(maxsize=4096)
def _day_of_utc_hour(hour: str) -> str:
    """Local day of a UTC hour ``YYYY-MM-DDTHH`` (time zones move by whole hours here)."""
    return local_day(f"{hour}:00:00+00:00").isoformat()


def day_of(at: Any) -> str:
    """The local calendar day (ISO text) of an envelope time, cached per UTC hour."""
    text = iso(at)
    assert text is not None
    return _day_of_utc_hour(text[:13])


class Emitter:
    """Collects counter deltas of one batch, keyed by counter, day and place."""

    def __init__(self) -> None:
        self.deltas: dict[tuple[str, str, str, str, str, str], int] = {}
        self.places: dict[str, tuple[str, str]] = {}

    def add(
        self,
        state: dict[str, Any],
        counter: str,
        day: str,
        level: str | None,
        department: str | None,
        n: int = 1,
    ) -> None:
        key = (counter, day, state["grid"], level or "", department or "", state["inspector"] or "")
        self.deltas[key] = self.deltas.get(key, 0) + n
        self.places[state["grid"]] = (state["community"] or "", state["district"] or "")


def fold(state: dict[str, Any] | None, env: Envelope, out: Emitter) -> dict[str, Any] | None:
    """The metrics state of a case after one event (``state`` is updated in place), and the
    counter deltas the event causes (into ``out``). No I/O; deterministic.

    The state is :func:`projections.map.track`'s facts plus the cohort bookkeeping:
    ``rep_day``/``rep_level`` (report), ``valid``, ``filed_day`` and ``filed_key`` (the
    (level, department) the due-to-close count currently sits on), ``disp_day``/
    ``disp_level``/``disp_dept`` (last dispatch) and ``last_result_on_time``.
    """
    etype = env["type"]
    data: dict[str, Any] = env.get("data") or {}
    fresh = state is None
    before = {} if state is None else {
        "due": state["due"], "due_step": state["due_step"],
        "level": state["level"], "department": state["department"],
    }
    state = advance(state, env)
    if state is None:
        return None
    summary = data.get("summary") or {}
    if "offers" in summary:  # what the event changed: the offers, when it changed them
        state["finished"] = not summary["offers"]
    if fresh:
        # A case seen first: carry the cohort fields (Reported is always a case's first event).
        state.update(
            rep_day=None, rep_level=None, valid=False, filed_day=None, filed_key=None,
            disp_day=None, disp_level=None, disp_dept=None, last_result_on_time=None,
        )
    day = day_of(env["at"])
    level, dept = state["level"], state["department"]
    running_step = before.get("due_step")

    def in_time() -> bool:
        """Done by the deadline that was running (or none was)."""
        due = parse_time(before.get("due"))
        at = parse_time(env["at"])
        return due is None or at is None or at <= due

    def move_due_to_close() -> None:
        """Keep the filed case's due-to-close count on the department / level owning it."""
        if state["filed_day"] is None:
            return
        new_key = [state["level"] or "", state["department"] or ""]
        if state["filed_key"] != new_key:
            old = state["filed_key"]
            out.add(state, "due_to_close", state["filed_day"], old[0], old[1], -1)
            out.add(state, "due_to_close", state["filed_day"], new_key[0], new_key[1], +1)
            state["filed_key"] = new_key

    if etype == "Reported":
        state["rep_day"], state["rep_level"] = day, level
        out.add(state, "reported", day, level, None)
    elif etype == "Filed":
        out.add(state, "filed", day, level, dept)
        out.add(state, "filed_of_reported", state["rep_day"], state["rep_level"], None)
        if not state["valid"]:
            state["valid"] = True
            out.add(state, "valid_of_reported", state["rep_day"], state["rep_level"], None)
        state["filed_day"] = day
        state["filed_key"] = [level or "", dept or ""]
        out.add(state, "due_to_close", day, level, dept)
    elif etype in ("Rejected", "MarkedDuplicate"):
        out.add(state, "rejected" if etype == "Rejected" else "merged", day, level, dept)
        if etype == "MarkedDuplicate" and not state["valid"]:
            state["valid"] = True
            out.add(state, "valid_of_reported", state["rep_day"], state["rep_level"], None)
        if state["filed_day"] is not None:  # voided after filing: no longer due to close
            key = state["filed_key"]
            out.add(state, "due_to_close", state["filed_day"], key[0], key[1], -1)
            state["filed_day"] = state["filed_key"] = None
    elif etype == "Dispatched":
        on_time = running_step != "dispatch" or in_time()
        out.add(state, "dispatched", day, level, dept)
        if on_time:
            out.add(state, "dispatched_on_time", day, level, dept)
        if data.get("wrong_dispatch"):
            out.add(state, "wrong_dispatches", day, level, dept)
        state["disp_day"], state["disp_level"], state["disp_dept"] = day, level, dept
        move_due_to_close()
    elif etype == "Returned":
        out.add(state, "returned", day, before.get("level"), before.get("department"))
        if state["disp_day"] is not None:
            out.add(
                state,
                "returned_of_dispatched",
                state["disp_day"],
                state["disp_level"],
                state["disp_dept"],
            )
            state["disp_day"] = None
        move_due_to_close()
    elif etype == "ResultReported":
        on_time = running_step != "handle" or in_time()
        out.add(state, "handled", day, level, dept)
        if on_time:
            out.add(state, "handled_on_time", day, level, dept)
        state["last_result_on_time"] = on_time
    elif etype in ("VerificationPassed", "VerificationFailed"):
        out.add(state, "verified", day, level, dept)
        if etype == "VerificationFailed":
            out.add(state, "verify_failed", day, level, dept)
    elif etype == "Escalated":
        out.add(
            state,
            "escalations",
            day,
            data.get("from_level") or before.get("level"),
            data.get("previous_department") or before.get("department"),
        )
        move_due_to_close()
    elif etype == "Supervised":
        out.add(state, "supervision_orders", day, level, dept)
    elif etype == "Closed":
        out.add(state, "closed", day, level, dept)
        state["closed_key"] = [day, level or "", dept or ""]  # the reopen-rate cohort
        if state["filed_day"] is not None:
            key = state["filed_key"]
            out.add(state, "closed_of_filed", state["filed_day"], key[0], key[1])
            if state["last_result_on_time"]:
                out.add(state, "closed_on_time_of_filed", state["filed_day"], key[0], key[1])
            state["closed_counted"] = [state["filed_day"], *key, bool(state["last_result_on_time"])]
    elif etype == "Reopened":
        out.add(state, "reopened", day, before.get("level"), before.get("department"))
        closing = state.pop("closed_key", None)
        if closing:
            out.add(state, "reopened_of_closed", closing[0], closing[1], closing[2])
        counted = state.pop("closed_counted", None)
        if counted:  # closed no more: counted again when it is closed again
            filed_day, lvl, dep, on_time = counted
            out.add(state, "closed_of_filed", filed_day, lvl, dep, -1)
            if on_time:
                out.add(state, "closed_on_time_of_filed", filed_day, lvl, dep, -1)
    elif etype == "ReturnVisited":
        state["visited"] = True
        out.add(state, "return_visits", day, level, dept)
        answer = data.get("satisfaction")
        if answer in ("satisfied", "basically_satisfied", "dissatisfied"):
            out.add(state, answer, day, level, dept)
    elif etype == "ReopenDeclined":
        out.add(state, "reopen_declined", day, level, dept)
    elif etype == "OverdueMarked":
        out.add(state, "overdue_marks", day, level, dept)
    elif etype == "WarningMarked":
        out.add(state, "warning_marks", day, level, dept)
    elif etype == "ExtensionRequested":
        out.add(state, "extensions_requested", day, level, dept)
    elif etype == "ExtensionApproved":
        out.add(state, "extensions_approved", day, level, dept)
    return state


DDL = """
CREATE TABLE IF NOT EXISTS metric_counts (
    counter text NOT NULL,
    day date NOT NULL,
    grid text NOT NULL,
    level text NOT NULL DEFAULT '',
    department text NOT NULL DEFAULT '',
    inspector text NOT NULL DEFAULT '',
    community text NOT NULL DEFAULT '',
    district text NOT NULL DEFAULT '',
    value bigint NOT NULL,
    PRIMARY KEY (counter, day, grid, level, department, inspector)
);
CREATE INDEX IF NOT EXISTS metric_counts_day_idx ON metric_counts (day, counter);
CREATE TABLE IF NOT EXISTS metric_case_state (
    case_id uuid PRIMARY KEY,
    state jsonb NOT NULL
);
""" + """
-- The roll-up below was first kept by statement triggers on metric_counts (dropped here); it
-- is written by the projection's own batch statement (MetricsProjection.apply) and, after a
-- rebuild's COPY, by ROLLUP_FROM_COUNTS (projections/bulk.py DERIVED).
DROP TRIGGER IF EXISTS metric_counts_roll_ins ON metric_counts;
DROP TRIGGER IF EXISTS metric_counts_roll_upd ON metric_counts;
DROP TRIGGER IF EXISTS metric_counts_roll_del ON metric_counts;
DROP FUNCTION IF EXISTS metric_counts_roll();
DO $setup$
BEGIN
    -- metric_counts summed over level, department and inspector: what the command centre's
    -- overview reads (a tenth of the rows).
    IF to_regclass(quote_ident(current_schema()) || '.metric_counts_daily') IS NULL THEN
        CREATE TABLE metric_counts_daily (
            counter text NOT NULL,
            day date NOT NULL,
            grid text NOT NULL,
            community text NOT NULL DEFAULT '',
            district text NOT NULL DEFAULT '',
            value bigint NOT NULL,
            PRIMARY KEY (counter, day, grid)
        );
        -- A deployment from before the roll-up: start from its counters, with writers held
        -- off until this transaction commits.
        LOCK TABLE metric_counts IN SHARE ROW EXCLUSIVE MODE;
        {rollup};
    END IF;
END
$setup$;
-- The centre reads a period of days across places: an index-only scan of just those days.
CREATE INDEX IF NOT EXISTS metric_counts_daily_day_idx
    ON metric_counts_daily (day) INCLUDE (counter, grid, value);
"""

#: ``metric_counts_daily`` from scratch: ``metric_counts`` summed over level, department and
#: inspector; a sum of zero has no row (as in :meth:`MetricsProjection.apply`).
ROLLUP_FROM_COUNTS = (
    "INSERT INTO metric_counts_daily (counter, day, grid, community, district, value) "
    "SELECT counter, day, grid, min(community), min(district), sum(value) "
    "FROM metric_counts GROUP BY 1, 2, 3 HAVING sum(value) <> 0"
)
DDL = DDL.replace("{rollup}", ROLLUP_FROM_COUNTS)

def finished(state: dict[str, Any]) -> bool:
    """Nothing can happen to the case any more: its last event offered no role any action
    (a recorded fact — a closed case still waits for its return visit, and a dissatisfied
    one for a possible reopen). Its state row is then dropped."""
    return bool(state.get("finished"))


class MetricsProjection:
    """Maintains ``metric_counts`` (counters) and ``metric_case_state`` (per-case cohorts)."""

    name = "metrics"
    tables = ("metric_counts", "metric_case_state", "metric_counts_daily")

    def ddl(self) -> str:
        return DDL

    async def apply(self, conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        ids = list(dict.fromkeys(e["case_id"] for e in envelopes))
        rows = await rows_of_known_cases(
            conn, "SELECT case_id, state FROM metric_case_state WHERE case_id = ANY($1::uuid[])",
            envelopes,
        )
        states: dict[str, dict[str, Any] | None] = {str(r["case_id"]): r["state"] for r in rows}
        existed = set(states)
        out = Emitter()
        for env in envelopes:
            states[env["case_id"]] = fold(states.get(env["case_id"]), env, out)
        keep = []
        drop = []
        for case_id in ids:
            s = states.get(case_id)
            if s is None:
                continue
            if finished(s):
                if case_id in existed:
                    drop.append(case_id)
            else:
                keep.append((case_id, s))
        if keep:
            await conn.execute(
                insert_rows("metric_case_state", {"case_id": "uuid", "state": "jsonb"})
                + " ON CONFLICT (case_id) DO UPDATE SET state = EXCLUDED.state",
                json_rows({"case_id": k, "state": v} for k, v in keep),
            )
        if drop:
            await conn.execute(
                "DELETE FROM metric_case_state WHERE case_id = ANY($1::uuid[])", drop
            )
        # A net-zero delta (a count moved away and back within the batch) changes no row.
        deltas = {k: n for k, n in out.deltas.items() if n}
        if deltas:
            counted: list[dict[str, Any]] = []
            daily: dict[tuple[str, date, str], int] = {}
            for (c, d, g, lv, dep, insp), n in deltas.items():
                community, district = out.places[g]
                day = date.fromisoformat(d)
                key = (c, day, g, lv, dep, insp, community, district, n)
                counted.append(dict(zip(_COUNTED, key, strict=True)))
                daily[(c, day, g)] = daily.get((c, day, g), 0) + n
            # The roll-up's change: the same deltas summed over level, department and
            # inspector (a grid has one community and district, the jurisdiction's); a sum
            # that does not move changes no row. Sorted: concurrent batches lock in one order.
            rolled = [dict(zip(_ROLLED, (*k, *out.places[k[2]], n), strict=True))
                      for k, n in sorted(daily.items()) if n]
            # One statement for the whole batch and its roll-up; it returns the keys that
            # reached zero (a count moved on by a re-dispatch), which are removed so that the
            # tables depend only on the events, never on how they were batched.
            zeros = await conn.fetch(_UPSERT_COUNTS, json_rows(counted), json_rows(rolled))
            if zeros:
                counts = [tuple(r)[1:] for r in zeros if not r["rolled"]]
                days = [tuple(r)[1:4] for r in zeros if r["rolled"]]
                if counts:
                    await conn.execute(
                        "DELETE FROM metric_counts WHERE value = 0 AND (counter, day, grid, "
                        "level, department, inspector) IN (SELECT * FROM unnest($1::text[], "
                        "$2::date[], $3::text[], $4::text[], $5::text[], $6::text[]))",
                        *[list(col) for col in zip(*counts, strict=True)],
                    )
                if days:
                    await conn.execute(
                        "DELETE FROM metric_counts_daily WHERE value = 0 AND (counter, day, "
                        "grid) IN (SELECT * FROM unnest($1::text[], $2::date[], $3::text[]))",
                        *[list(col) for col in zip(*days, strict=True)],
                    )


#: A count's change (its key, the grid's community and district, and by how much) and the
#: roll-up's (summed over level, department and inspector).
_COUNTED = {
    "counter": "text", "day": "date", "grid": "text", "level": "text", "department": "text",
    "inspector": "text", "community": "text", "district": "text", "value": "bigint",
}
_ROLLED = {
    "counter": "text", "day": "date", "grid": "text", "community": "text", "district": "text",
    "value": "bigint",
}

_UPSERT_COUNTS = (
    f"WITH up AS ({insert_rows('metric_counts', _COUNTED, 1)} "
    "ON CONFLICT (counter, day, grid, level, department, "
    "inspector) DO UPDATE SET value = metric_counts.value + EXCLUDED.value "
    "RETURNING counter, day, grid, level, department, inspector, value), "
    f"roll AS ({insert_rows('metric_counts_daily AS r', _ROLLED, 2)} "
    "ON CONFLICT (counter, day, grid) "
    "DO UPDATE SET value = r.value + EXCLUDED.value RETURNING r.counter, r.day, r.grid, "
    "r.value) "
    "SELECT false AS rolled, counter, day, grid, level, department, inspector "
    "FROM up WHERE value = 0 "
    "UNION ALL SELECT true, counter, day, grid, '', '', '' FROM roll WHERE value = 0"
)


# --------------------------------------------------------------------------- queries


GROUPS_SQL = {
    "day": "day::text",
    "week": "to_char(day, 'IYYY-\"W\"IW')",
    "month": "to_char(day, 'YYYY-MM')",
    "department": "department",
    "level": "level",
    "inspector": "inspector",
    "grid": "grid",
    "community": "community",
    "district": "district",
}


async def sum_counters(
    conn: asyncpg.Connection,
    day_from: date,
    day_to: date,
    grids: list[str] | None,
    group_sql: str | None,
    department: str | None = None,
    level: str | None = None,
    inspector: str | None = None,
) -> dict[str, dict[str, int]]:
    """{group key: {counter: sum}} over the period (inclusive) and places (None = all)."""
    filters = (("department", department), ("level", level), ("inspector", inspector))
    return await _summed(conn, "metric_counts", day_from, day_to, grids, group_sql,
                         [(column, value) for column, value in filters if value is not None])


#: Groupings ``metric_counts_daily`` (counters per counter, day and grid) can answer.
DAILY_GROUPS = (None, *(GROUPS_SQL[g] for g in ("day", "week", "month", "grid",
                                                 "community", "district")))


async def sum_daily_counters(
    conn: asyncpg.Connection,
    day_from: date,
    day_to: date,
    grids: list[str] | None,
    group_sql: str | None,
) -> dict[str, dict[str, int]]:
    """What :func:`sum_counters` gives without a department / level / inspector filter, from
    the roll-up ``metric_counts_daily`` (a tenth of the rows); ``group_sql`` must be one of
    :data:`DAILY_GROUPS`."""
    if group_sql not in DAILY_GROUPS:
        raise ValueError(f"the daily roll-up cannot group by {group_sql!r}")
    return await _summed(conn, "metric_counts_daily", day_from, day_to, grids, group_sql, [])


async def _summed(
    conn: asyncpg.Connection,
    table: str,
    day_from: date,
    day_to: date,
    grids: list[str] | None,
    group_sql: str | None,
    equal: list[tuple[str, str]],
) -> dict[str, dict[str, int]]:
    where = ["day BETWEEN $1 AND $2"]
    params: list[Any] = [day_from, day_to]
    for column, value in equal:
        params.append(value)
        where.append(f"{column} = ${len(params)}")
    if grids is not None:
        params.append(grids)
        where.append(f"grid = ANY(${len(params)}::text[])")
    key = group_sql or "''"
    rows = await conn.fetch(
        f"SELECT {key} AS k, counter, sum(value)::bigint AS v FROM {table} "
        f"WHERE {' AND '.join(where)} GROUP BY 1, 2",
        *params,
    )
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["k"] or "", {})[r["counter"]] = int(r["v"])
    return out


async def snapshot_counters(
    conn: asyncpg.Connection,
    grids: list[str] | None,
    group_sql: str | None,
    department: str | None = None,
    level: str | None = None,
    inspector: str | None = None,
) -> dict[str, dict[str, int]]:
    """{group key: {open_now, warning_now, overdue_now}} from the map model (its open cases:
    a closed one stays there while a return visit or a reopen may still follow)."""
    params: list[Any] = [sorted(TERMINAL)]
    where = ["status <> ALL($1::text[])"]
    for column, value in (("department", department), ("level", level), ("inspector", inspector)):
        if value is not None:
            params.append(value)
            where.append(f"coalesce({column}, '') = ${len(params)}")
    if grids is not None:
        params.append(grids)
        where.append(f"grid = ANY(${len(params)}::text[])")
    key = f"coalesce({group_sql}, '')" if group_sql else "''"
    rows = await conn.fetch(
        f"SELECT {key} AS k, count(*) AS open_now, count(*) FILTER (WHERE warning) AS "
        f"warning_now, count(*) FILTER (WHERE overdue) AS overdue_now FROM map_cases "
        f"WHERE {' AND '.join(where)} GROUP BY 1",
        *params,
    )
    return {
        r["k"]: {s: int(r[s]) for s in ("open_now", "warning_now", "overdue_now")} for r in rows
    }


def evaluate(counters: dict[str, int], keys: Sequence[str] | None = None) -> dict[str, Any]:
    """{metric key: value} for the given (or all) metrics."""
    return {k: compute(METRICS[k], counters) for k in (keys or METRICS)}


__all__ = [
    "COUNTERS",
    "METRICS",
    "METRIC_TZ",
    "Emitter",
    "MetricsProjection",
    "compute",
    "definitions",
    "evaluate",
    "fold",
    "local_day",
]
