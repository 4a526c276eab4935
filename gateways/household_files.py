"""The household register as a spreadsheet (xlsx via openpyxl, or csv): export and import.

One row per household. Columns (the header row, zh-Hans; the order does not matter on import):

==============  ==================================================================
外部编号         the source system's id (optional; with the grid it makes the import
                idempotent: the same row imported twice is one household)
户编号           our household number (export only)
网格             grid code (required)
地址             address (required) · 标准地址编码 the city's standard address code
成员             ``姓名/关系/出生年/电话`` separated by ``;`` (all but the name optional)
困难 … 孤寡老人   one column per must-visit flag: the reason; empty means not flagged
责任网格员       inspector's user id (default: the grid team's) · 联系党员 party member
==============  ==================================================================

Export adds 下次走访期限, 最近走访, 走访次数 and 受限 (是: details withheld from the exporting
role; ``gateways/http/household_access.present`` decides, the same as on screen).
Import answers the rows it took and a report of the rows it refused, each with its row number
and the reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from aggregates.households.actions import RegisterArgs
from core.jurisdiction import Jurisdiction
from core.vocabulary import CARE_FLAG_LABELS, CARE_FLAGS

FLAG_COLUMNS = {CARE_FLAG_LABELS[f]: f for f in CARE_FLAGS}
IMPORT_COLUMNS = ["外部编号", "网格", "地址", "标准地址编码", "成员", *FLAG_COLUMNS,
                  "责任网格员", "联系党员"]
EXPORT_COLUMNS = ["户编号", "网格", "地址", "标准地址编码", "成员", *FLAG_COLUMNS,
                  "责任网格员", "联系党员", "下次走访期限", "最近走访", "走访次数", "受限"]


@dataclass
class ImportRow:
    line: int  # spreadsheet row number (header = 1)
    key: str
    args: dict[str, Any]


@dataclass
class Parsed:
    rows: list[ImportRow] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


#: The register's fields under their column names (a refused row's reason names the column).
FIELD_COLUMNS = {
    "grid": "网格", "address": "地址", "address_code": "标准地址编码", "members": "成员",
    "flags": "走访标记", "inspector": "责任网格员", "party_member": "联系党员",
    "name": "姓名", "relation": "关系", "birth_year": "出生年", "phone": "电话",
    "reason": "原因",
}
#: pydantic's refusals in words, per error type (others keep pydantic's own message).
PROBLEM_WORDS = {
    "missing": "必填",
    "string_too_short": "不能为空",
    "string_too_long": "过长 (最多 {max_length} 个字符)",
    "string_pattern_mismatch": "格式不对",
    "too_long": "过多 (最多 {max_length} 项)",
    "int_parsing": "须为整数",
    "greater_than_equal": "须不小于 {ge}",
    "less_than_equal": "须不大于 {le}",
}


def _problem(error: Mapping[str, Any]) -> str:
    """One pydantic error as ``成员 1 电话: 格式不对`` (columns and members by name)."""
    where = []
    for part in error["loc"]:
        if isinstance(part, int):
            where.append(str(part + 1))
        else:
            where.append(FIELD_COLUMNS.get(str(part), str(part)))
    words = PROBLEM_WORDS.get(error["type"])
    text = words.format(**(error.get("ctx") or {})) if words else error["msg"]
    return f"{' '.join(where)}: {text}" if where else text


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def parse_members(text: str) -> list[dict[str, Any]]:
    members = []
    for part in filter(None, (p.strip() for p in text.replace("；", ";").split(";"))):
        bits = [b.strip() for b in part.split("/")]
        member: dict[str, Any] = {"name": bits[0]}
        if len(bits) > 1 and bits[1]:
            member["relation"] = bits[1]
        if len(bits) > 2 and bits[2]:
            if not bits[2].isascii() or not bits[2].isdigit():
                raise ValueError(f"成员 {part!r}: 出生年须为数字 (如 1950), 不是 {bits[2]!r}")
            member["birth_year"] = int(bits[2])
        if len(bits) > 3 and bits[3]:
            member["phone"] = bits[3]
        if len(bits) > 4:
            raise ValueError(f"成员 {part!r}: 最多 姓名/关系/出生年/电话 四项")
        members.append(member)
    return members


def format_members(members: Iterable[Mapping[str, Any]]) -> str:
    out = []
    for m in members:
        bits = [_text(m.get(k)) for k in ("name", "relation", "birth_year", "phone")]
        while len(bits) > 1 and not bits[-1]:
            bits.pop()
        out.append("/".join(bits))
    return ";".join(out)


def read_table(data: bytes, filename: str) -> list[list[Any]]:
    """Rows of the first sheet (xlsx) or of the csv (UTF-8, with or without BOM)."""
    if filename.lower().endswith(".xlsx"):
        import openpyxl  # here, not at the top: every role process imports the CLI (≈ 12 MB)

        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        sheet = book.worksheets[0]
        return [list(r) for r in sheet.iter_rows(values_only=True)]
    text = data.decode("utf-8-sig")
    return [list(r) for r in csv.reader(io.StringIO(text))]


def parse_import(table: list[list[Any]], j: Jurisdiction) -> Parsed:
    """Validate every row; good ones become ``register`` arguments, bad ones are reported."""
    out = Parsed()
    if not table:
        out.rejected.append({"line": 1, "reason": "文件为空"})
        return out
    header = [_text(h) for h in table[0]]
    missing = [c for c in ("网格", "地址") if c not in header]
    if missing:
        out.rejected.append({"line": 1, "reason": f"缺少列: {'、'.join(missing)}"})
        return out
    seen: dict[str, int] = {}
    for number, raw in enumerate(table[1:], start=2):
        cells = {header[i]: _text(v) for i, v in enumerate(raw) if i < len(header)}
        if not any(cells.values()):
            continue
        try:
            grid = cells.get("网格", "")
            if grid not in j.grids:
                raise ValueError(f"未知网格 {grid!r}")
            flags = [{"flag": flag, "reason": cells[label]}
                     for label, flag in FLAG_COLUMNS.items() if cells.get(label)]
            args = RegisterArgs.model_validate({
                "household_no": "pending",
                "grid": grid,
                "address": cells.get("地址", ""),
                "address_code": cells.get("标准地址编码") or None,
                "members": parse_members(cells.get("成员", "")),
                "flags": flags,
                "inspector": cells.get("责任网格员") or None,
                "party_member": cells.get("联系党员") or None,
            }).model_dump(mode="json", exclude={"household_no"})
            key = f"import:{grid}:{cells.get('外部编号') or cells.get('地址')}"
            if key in seen:
                raise ValueError(f"与第 {seen[key]} 行是同一户")
            seen[key] = number
            out.rows.append(ImportRow(number, key, args))
        except ValidationError as exc:
            reasons = "; ".join(_problem(e) for e in exc.errors())
            out.rejected.append({"line": number, "reason": reasons, "row": cells})
        except ValueError as exc:
            out.rejected.append({"line": number, "reason": str(exc), "row": cells})
    return out


def export_cells(row: Mapping[str, Any]) -> list[Any]:
    """One presented register row as export cells (see the module docstring)."""
    flags = row.get("flags") or {}

    def when(value: Any) -> str:
        return "" if value is None else str(value)[:16].replace("T", " ")

    return [
        row.get("household_no"), row.get("grid"), row.get("address"),
        row.get("address_code") or "", format_members(row.get("members") or []),
        *[(flags.get(flag) or {}).get("reason", "已标记" if flag in flags else "")
          for flag in FLAG_COLUMNS.values()],
        row.get("inspector") or "", row.get("party_member") or "",
        when(row.get("due_at")), when(row.get("last_visit_at")), row.get("visits", 0),
        "是" if row.get("details") == "limited" else "",
    ]


def write_table(header: list[str], rows: Iterable[list[Any]], fmt: str) -> bytes:
    if fmt == "xlsx":
        import openpyxl

        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = "户情"
        sheet.append(header)
        for r in rows:
            sheet.append(r)
        buffer = io.BytesIO()
        book.save(buffer)
        return buffer.getvalue()
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" + text.getvalue()).encode("utf-8")


def rejected_report(rejected: list[dict[str, Any]]) -> bytes:
    """The rejected rows as csv: row number, reason, then the row's cells."""
    return write_table(
        ["行号", "原因", *IMPORT_COLUMNS],
        ([r["line"], r["reason"], *[(r.get("row") or {}).get(c, "") for c in IMPORT_COLUMNS]]
         for r in rejected),
        "csv",
    )
