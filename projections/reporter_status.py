"""What a reporter may learn about their case (工单查询), read from the read models.

A citizen who reported a problem (hotline, Open311) checks its progress with the case number
and the last four digits of the phone number they gave. They learn *where the case stands*
and *when it moved*, in words meant for them — nothing else: no names or phones (theirs
included), no description, address or coordinates, no photos, no staff, no departments' notes
or reasons, no internal codes. ``tests/integration/test_reporter_status.py`` checks what is
and what is not in the answer.

The answer for a wrong case number and for a wrong phone is the same (None), so a lookup
cannot tell which was wrong; the gateway rate-limits lookups like sign-ins.
"""

from __future__ import annotations

import re
from typing import Any

#: Status → what the reporter reads (zh-Hans).
PUBLIC_STATUS: dict[str, str] = {
    "reported": "已受理, 等待立案",
    "filed": "已立案, 等待派遣",
    "rejected": "经核实不予立案",
    "merged": "与他人反映的同一问题合并办理",
    "dispatched": "已派遣至处置部门",
    "in_progress": "处置部门正在办理",
    "returned": "正在重新派遣",
    "suspended": "暂缓办理(已列入计划)",
    "awaiting_verification": "已处置, 等待现场核查",
    "verified": "现场核查通过, 等待结案",
    "closed": "已办结",
}
#: The events a reporter sees on the progress list, with their words; any other event (who
#: was warned, escalations, supervision, extensions, notes) is internal and not shown.
MILESTONES: dict[str, str] = {
    "Reported": "已受理",
    "Filed": "已立案",
    "Rejected": "不予立案",
    "MarkedDuplicate": "合并办理",
    "Dispatched": "已派遣至处置部门",
    "Accepted": "处置部门已接单",
    "ResultReported": "处置完毕, 等待核查",
    "VerificationFailed": "核查未通过, 重新处置",
    "VerificationPassed": "现场核查通过",
    "Closed": "已办结",
    "ReturnVisited": "已回访",
    "Reopened": "重新办理",
}
_DIGITS = re.compile(r"\D")
CASE_NO = re.compile(r"^[A-Z]{2}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$")


def phone_matches(phone: str | None, last4: str) -> bool:
    digits = _DIGITS.sub("", phone or "")
    return len(digits) >= 4 and len(last4) == 4 and digits[-4:] == last4


def normalise_case_no(text: str) -> str:
    return text.strip().upper()


async def lookup(conn: Any, case_no: str, last4: str) -> dict[str, Any] | None:
    """The reporter's view of the case, or None (no such case, or the digits do not match
    the phone of the reporter or of a reporter merged into it)."""
    case_no = normalise_case_no(case_no)
    if not CASE_NO.match(case_no) or not re.fullmatch(r"\d{4}", last4 or ""):
        return None
    row = await conn.fetchrow(
        "SELECT case_id, case_no, status, category, reporter_phone, reported_at, updated_at, "
        "closed_at FROM case_queue WHERE case_no = $1", case_no,
    )
    if row is None:
        return None
    timeline = await conn.fetch(
        "SELECT type, at, data FROM case_timeline WHERE case_id = $1 ORDER BY version",
        row["case_id"],
    )
    phones = [row["reporter_phone"]]
    for t in timeline:  # reporters of duplicates merged into this case (ReporterLinked)
        reporter = (t["data"] or {}).get("reporter") if t["type"] == "ReporterLinked" else None
        if isinstance(reporter, dict):
            phones.append(reporter.get("phone"))
    if not any(phone_matches(p, last4) for p in phones):
        return None
    return {
        "case_no": row["case_no"],
        "status": row["status"],
        "status_text": PUBLIC_STATUS.get(row["status"], row["status"]),
        "category": row["category"],
        "reported_at": row["reported_at"],
        "updated_at": row["updated_at"],
        "closed_at": row["closed_at"],
        "finished": row["status"] in ("closed", "rejected", "merged"),
        "progress": [
            {"at": t["at"], "text": MILESTONES[t["type"]]}
            for t in timeline if t["type"] in MILESTONES
        ],
    }
