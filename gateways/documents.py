"""The leadership's documents as files (文书): PDF with a CJK font (fpdf2) and Excel (openpyxl).

* :func:`case_file_pdf` — 案卷: the case, its timeline (who did what, when, why), photos;
* :func:`supervision_pdf` — 督办单: the supervision order(s) of a case, to sign and send;
* :func:`evaluation_pdf`, :func:`evaluation_xlsx` — 综合评价: the monthly evaluation report,
  rankings of districts, departments, communities and grids by the published metrics.

The data comes from ``projections/documents.py`` (read models); these functions only lay it
out, so the HTTP endpoints (``gateways/http/documents.py``) and ``gridctl documents`` give the
same files. Times are written the way Chinese offices write them (2026-12-05 09:30, Beijing
time); rates as percentages with two decimals (93.72%).

The font: PDF viewers have no Chinese glyphs of their own, so the file embeds (a subset of) a
CJK font: ``GRID_PDF_FONT`` if set, else the first of :data:`FONT_CANDIDATES` installed
(``fonts-wqy-microhei`` from Debian's archive, as ``.ci/run`` installs it).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from core.vocabulary import (
    PRIORITY_LABELS,
    ROLE_LABELS,
    SATISFACTION_LABELS,
    SOURCE_LABELS,
    STEP_LABELS,
)

LOCAL = ZoneInfo("Asia/Shanghai")
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)


class FontMissing(RuntimeError):
    """No CJK font is installed: the PDF would show empty boxes instead of Chinese."""


def font_path() -> Path:
    given = os.environ.get("GRID_PDF_FONT")
    for candidate in ([given] if given else []) + list(FONT_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FontMissing(
        "no CJK font for PDF documents: install fonts-wqy-microhei (apt-get install "
        "fonts-wqy-microhei) or set GRID_PDF_FONT to a .ttf/.ttc file"
    )


def when(value: Any) -> str:
    """``2026-12-05 09:30`` (Beijing time) from a datetime or ISO text; ``—`` for none."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.strftime("%Y-%m-%d %H:%M")
        return value.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M")
    return str(value)


def percent(value: Any) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


def metric_text(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    return percent(value) if kind == "rate" else str(value)


# --------------------------------------------------------------------------- PDF


class _Pdf(FPDF):
    def __init__(self, title: str, subtitle: str, landscape: bool = False) -> None:
        super().__init__(orientation="L" if landscape else "P", unit="mm", format="A4")
        self.doc_title = title
        self.subtitle = subtitle
        self.add_font("cjk", fname=str(font_path()))
        self.set_font("cjk", size=10)
        self.set_title(title)
        self.set_creator("griddispatch")
        self.set_auto_page_break(True, margin=15)
        self.set_margins(15, 15, 15)
        self.add_page()

    def header(self) -> None:
        self.set_font("cjk", size=16)
        self.cell(0, 10, self.doc_title, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font("cjk", size=9)
        self.set_text_color(90, 90, 90)
        self.cell(0, 6, self.subtitle, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)
        self.ln(2)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("cjk", size=8)
        self.set_text_color(120, 120, 120)
        self.cell(0, 6, f"第 {self.page_no()} 页 / 共 {{nb}} 页", align="C")
        self.set_text_color(0, 0, 0)

    def heading(self, text: str) -> None:
        self.ln(2)
        self.set_font("cjk", size=12)
        self.cell(0, 8, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font("cjk", size=9)

    def fields(self, pairs: list[tuple[str, Any]]) -> None:
        self.set_font("cjk", size=9)
        with self.table(col_widths=(36, 144), first_row_as_headings=False,
                        line_height=6) as table:
            for key, value in pairs:
                row = table.row()
                row.cell(key)
                row.cell("—" if value in (None, "") else str(value))

    def grid_table(self, headings: list[str], rows: list[list[str]],
                   widths: tuple[float, ...], size: float = 8) -> None:
        self.set_font("cjk", size=size)
        with self.table(col_widths=widths, line_height=size * 0.6,
                        headings_style=_HEADINGS) as table:
            head = table.row()
            for h in headings:
                head.cell(h)
            for values in rows:
                row = table.row()
                for v in values:
                    row.cell(v)

    def bytes(self) -> bytes:
        return bytes(self.output())


def _headings_style() -> Any:
    from fpdf.fonts import FontFace

    return FontFace(emphasis=None, fill_color=(230, 236, 245))


_HEADINGS = _headings_style()


def _person(actor: str | None, role: str | None, names: Mapping[str, str]) -> str:
    if not actor:
        return "—"
    name = names.get(actor)
    role_zh = ROLE_LABELS.get(role or "", role or "")
    if actor == "system" or (role == "system" and not name):
        return "系统"
    return f"{name or actor}({role_zh})" if role_zh else (name or actor)


def _what(entry: Mapping[str, Any], departments: Mapping[str, str] | None = None) -> str:
    """The reason or note of a timeline entry, and its telling facts (departments by name
    from ``departments``: code → name)."""
    data = entry.get("data") or {}
    parts = []
    for key in ("reason", "note", "comment"):
        value = entry.get(key) if key == "reason" else data.get(key)
        if value:
            parts.append(str(value))
    if data.get("department") and entry.get("type") in ("Dispatched", "Escalated"):
        parts.append(f"→ {(departments or {}).get(data['department'], data['department'])}")
    if data.get("satisfaction") and entry.get("type") == "ReturnVisited":
        parts.append(SATISFACTION_LABELS.get(data["satisfaction"], data["satisfaction"]))
    if data.get("hours"):
        parts.append(f"{data['hours']} 小时")
    return ";".join(parts) or "—"


def _reporter(case: Mapping[str, Any], reported_by: str | None) -> str:
    """The citizen's name and phone (as masked for the reader), or the inspector who
    reported it."""
    said = " ".join(str(x) for x in (case.get("reporter_name"), case.get("reporter_phone")) if x)
    if said:
        return said
    if not reported_by or case.get("reporter_type") != "inspector":
        return "—"
    # A grid team member without an account is named by grid and duty already (with_names).
    return reported_by if reported_by.endswith("网格员") else f"网格员 {reported_by}"


def _case_fields(
    case: Mapping[str, Any], place: Mapping[str, str], reported_by: str | None = None,
) -> list[tuple[str, Any]]:
    return [
        ("案件编号", case.get("case_no")),
        ("状态", case.get("status_zh") or case.get("status")),
        ("问题类别", place.get("category") or case.get("category")),
        ("优先级", PRIORITY_LABELS.get(case.get("priority") or "", case.get("priority"))),
        ("所在网格", place.get("grid") or case.get("grid")),
        ("社区 / 区县", f"{place.get('community') or case.get('community') or '—'} / "
                      f"{place.get('district') or case.get('district') or '—'}"),
        ("地址", case.get("address")),
        ("问题描述", case.get("description")),
        ("来源", SOURCE_LABELS.get(case.get("source") or "", case.get("source"))),
        ("上报人", _reporter(case, reported_by)),
        ("处置部门", place.get("department") or case.get("department")),
        ("当前环节时限", f"{STEP_LABELS.get(case.get('due_step') or '', '')} "
                     f"{when(case.get('due_at'))}".strip()),
        ("上报时间", when(case.get("reported_at"))),
        ("结案时间", when(case.get("closed_at"))),
        ("回访满意度", SATISFACTION_LABELS.get(case.get("satisfaction") or "", "—")),
        ("督办 / 上提 / 返工 / 退单", f"{case.get('supervision_orders', 0)} / "
         f"{case.get('escalations', 0)} / {case.get('rework_count', 0)} / "
         f"{case.get('return_count', 0)}"),
    ]


def _first_actor(data: Mapping[str, Any]) -> str | None:
    """Who recorded the report (the first event's actor), by name when a user."""
    first = next((t for t in data["timeline"] if t["type"] == "Reported"), None)
    if first is None or not first.get("actor"):
        return None
    return str(data["names"].get(first["actor"]) or first["actor"])


def case_file_pdf(
    data: Mapping[str, Any], place: Mapping[str, str], city: str, generated: datetime,
    photos: Mapping[str, bytes] | None = None,
) -> bytes:
    """案卷 of one case: its fields, its timeline and its photos (``photos``: digest →
    bytes; a photo not given is listed by name)."""
    case = data["case"]
    pdf = _Pdf(f"{city} 城市网格化管理 案卷",
               f"案件编号 {case['case_no']} · 生成于 {when(generated)}")
    pdf.heading("一、案件信息")
    pdf.fields(_case_fields(case, place, _first_actor(data)))
    pdf.heading("二、办理过程(谁在何时做了什么)")
    rows = [
        [str(t["version"]), when(t["at"]), t["label"],
         _person(t.get("actor"), t.get("role"), data["names"]), _what(t, data.get("departments"))]
        for t in data["timeline"]
    ]
    pdf.grid_table(["序号", "时间", "操作", "办理人", "说明"], rows, (10, 28, 28, 40, 74))
    pdf.heading("三、照片")
    if not data["photos"]:
        pdf.cell(0, 6, "无照片", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for p in data["photos"]:
        caption = f"{p['label']}(第 {p['version']} 步){p.get('name') or ''}"
        image = (photos or {}).get(p["digest"])
        pdf.set_font("cjk", size=9)
        pdf.cell(0, 6, caption, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if image is None:
            pdf.cell(0, 6, f"(照片未取到: {p['digest'][:19]}…)", new_x=XPos.LMARGIN,
                     new_y=YPos.NEXT)
            continue
        try:
            pdf.image(io.BytesIO(image), w=80, h=60, keep_aspect_ratio=True)
        except Exception:  # a damaged upload must not stop the file
            pdf.cell(0, 6, "(照片无法显示)", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return pdf.bytes()


def supervision_pdf(
    data: Mapping[str, Any], place: Mapping[str, str], city: str, generated: datetime,
) -> bytes:
    """督办单: the supervision order(s) of a case, the case and where it stands, to sign."""
    case = data["case"]
    orders = data["orders"]
    pdf = _Pdf(f"{city} 城市网格化管理 督办单",
               f"案件编号 {case['case_no']} · 督办 {len(orders)} 次 · 生成于 {when(generated)}")
    pdf.heading("一、督办事项")
    if not orders:
        pdf.cell(0, 6, "本案件尚未督办。", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for i, order in enumerate(orders, start=1):
        pdf.fields([
            ("督办序号", f"第 {i} 次"),
            ("督办时间", when(order["at"])),
            ("督办人", _person(order.get("actor"), order.get("role"), data["names"])),
            ("督办意见", order.get("reason")),
            ("被督办部门", place.get("department") or case.get("department")),
            ("办理时限", when((order.get("data") or {}).get("due"))),
        ])
        pdf.ln(2)
    pdf.heading("二、案件情况")
    pdf.fields(_case_fields(case, place, _first_actor(data)))
    pdf.heading("三、办理要求")
    pdf.set_font("cjk", size=10)
    pdf.multi_cell(0, 6, "请被督办单位在时限内办结并反馈处置结果, 逾期将按规定通报。",
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(10)
    pdf.cell(90, 8, "督办单位(盖章):")
    pdf.cell(0, 8, "签收人 / 日期:", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return pdf.bytes()


def evaluation_pdf(report: Mapping[str, Any], generated: datetime) -> bytes:
    """综合评价 as PDF: per section a ranking table with the report's metrics."""
    pdf = _Pdf(
        f"{report['city']} 城市网格化管理 综合评价报告",
        f"统计期 {report['from']} 至 {report['to']} · 排名依据: {report['rank_by_zh']} "
        f"· 生成于 {when(generated)}",
        landscape=True,
    )
    columns = report["columns"]
    pdf.heading("全市合计")
    pdf.grid_table(
        [c["zh"] for c in columns],
        [[metric_text(report["totals"].get(c["key"]), c["kind"]) for c in columns]],
        tuple([267 / len(columns)] * len(columns)),
    )
    name_w = 40.0
    rest = (267 - 12 - name_w) / len(columns)
    for section in report["sections"]:
        pdf.heading(section["title"])
        if not section["rows"]:
            pdf.cell(0, 6, "本期无数据", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            continue
        rows = [
            [str(r["rank"]) if r["rank"] is not None else "—", r["name"],
             *(metric_text(r["metrics"].get(c["key"]), c["kind"]) for c in columns)]
            for r in section["rows"]
        ]
        pdf.grid_table(["排名", "名称", *(c["zh"] for c in columns)], rows,
                       (12, name_w, *([rest] * len(columns))), size=7)
    pdf.heading("指标定义")
    pdf.set_font("cjk", size=8)
    for c in columns:
        pdf.multi_cell(0, 5, c["formula_zh"], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return pdf.bytes()


# --------------------------------------------------------------------------- Excel

_BOLD = Font(bold=True)
_FILL = PatternFill("solid", fgColor="E6ECF5")


def _sheet_table(ws: Any, headings: list[str], rows: list[list[Any]], kinds: list[str]) -> None:
    ws.append(headings)
    for cell in ws[ws.max_row]:
        cell.font = _BOLD
        cell.fill = _FILL
        cell.alignment = Alignment(horizontal="center", wrap_text=True)
    first = ws.max_row + 1
    for values in rows:
        ws.append(values)
    for col, kind in enumerate(kinds, start=1):
        letter = get_column_letter(col)
        ws.column_dimensions[letter].width = 28 if kind == "name" else 12
        if kind == "rate":
            for row in range(first, ws.max_row + 1):
                ws[f"{letter}{row}"].number_format = "0.00%"
    ws.freeze_panes = ws[f"C{first}"]


def evaluation_xlsx(report: Mapping[str, Any], generated: datetime) -> bytes:
    """综合评价 as Excel: a summary sheet (period, totals, definitions) and one ranking sheet
    per section; rates are numbers formatted as percentages (sortable, summable)."""
    wb = Workbook()
    summary = wb.active
    summary.title = "总览"
    columns = report["columns"]
    summary.append([f"{report['city']} 城市网格化管理 综合评价报告"])
    summary["A1"].font = Font(bold=True, size=14)
    summary.append(["统计期", f"{report['from']} 至 {report['to']}"])
    summary.append(["排名依据", report["rank_by_zh"]])
    summary.append(["生成时间", when(generated)])
    summary.append([])
    summary.append(["全市合计"])
    _sheet_table(summary, ["指标", "数值", "定义"],
                 [[c["zh"], report["totals"].get(c["key"]), c["formula_zh"]] for c in columns],
                 ["name", "number", "name"])
    for row, c in enumerate(columns, start=summary.max_row - len(columns) + 1):
        if c["kind"] == "rate":
            summary[f"B{row}"].number_format = "0.00%"
    summary.column_dimensions["C"].width = 60
    summary.freeze_panes = None
    for section in report["sections"]:
        ws = wb.create_sheet(section["title"])
        rows = [
            [r["rank"], r["name"], *(r["metrics"].get(c["key"]) for c in columns), r["key"]]
            for r in section["rows"]
        ]
        _sheet_table(ws, ["排名", "名称", *(c["zh"] for c in columns), "代码"], rows,
                     ["number", "name", *(c["kind"] for c in columns), "name"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def with_names(ref: Any, data: dict[str, Any]) -> dict[str, Any]:
    """A case file's data with people and departments by name, not code: grid team members
    without an account by grid and duty (新华社区第三网格 网格员, as GET /v1/people names
    them), every department of the timeline by its name."""
    j = ref.jurisdiction
    data["names"] = {**j.team_names(t["actor"] for t in data["timeline"] if t.get("actor")),
                     **data["names"]}
    departments = {((t.get("data") or {}).get("department") or "") for t in data["timeline"]}
    data["departments"] = {code: j.departments[code].name_zh
                           for code in departments if code in j.departments}
    return data


def place_names(ref: Any, case: Mapping[str, Any]) -> dict[str, str]:
    """Names (with the code where a dispatcher needs it) of the case's category, places and
    department, from the reference data (``core.refdata.Reference``)."""
    j = ref.jurisdiction
    out: dict[str, str] = {}
    try:
        category = ref.catalogue.get(case.get("category"))
        out["category"] = f"{category.name_zh}({case.get('category')})"
    except Exception:  # an unknown code is shown as it is
        pass
    for key in ("grid", "community", "district"):
        code = case.get(key)
        place = j.grids.get(code) if key == "grid" else j.nodes.get(code)
        if place is not None:
            out[key] = f"{place.name_zh}({code})" if key == "grid" else place.name_zh
    dept = j.departments.get(case.get("department") or "")
    if dept is not None:
        out["department"] = dept.name_zh
    return out
