"""The documents' layout (gateways/documents.py): the PDFs and the workbook are opened again
(pypdf, openpyxl) and must say what the data says, in Chinese, with the photos embedded."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from openpyxl import load_workbook
from PIL import Image
from pypdf import PdfReader

from core.refdata import load_reference
from core.settings import get_settings
from gateways import documents as render
from projections import metrics as m
from projections.documents import REPORT_METRICS, rank

NOW = datetime(2026, 12, 5, 1, 30, tzinfo=UTC)  # 09:30 in Beijing
REF = load_reference(get_settings())


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 60, 60)).save(out, format="PNG")
    return out.getvalue()


def _case_data() -> dict[str, Any]:
    case = {
        "case_no": "GD-1234-5678-9ABC", "status": "closed", "status_zh": "已结案",
        "category": "SJ0101", "grid": "520102001001", "community": "520102001",
        "district": "520102", "description": "路口垃圾暴露, 气味很大", "address": "中华北路 1 号",
        "reporter_name": "王*", "reporter_phone": "137****1234", "source": "hotline",
        "department": "D-520102-sanitation", "priority": "urgent",
        "reported_at": datetime(2026, 12, 1, 1, 30, tzinfo=UTC),
        "closed_at": datetime(2026, 12, 2, 3, 0, tzinfo=UTC), "satisfaction": "dissatisfied",
        "supervision_orders": 1,
    }
    photo = {"digest": "sha256:" + "ab" * 32, "size": 10, "content_type": "image/png",
             "name": "现场.png"}
    timeline = [
        {"version": 1, "type": "Reported", "label": "上报", "actor": "calltaker",
         "role": "call_taker", "reason": None, "at": datetime(2026, 12, 1, 1, 30, tzinfo=UTC),
         "data": {"photos": [photo]}},
        {"version": 2, "type": "Supervised", "label": "督办", "actor": "supervisor",
         "role": "supervisor", "reason": "群众反映强烈, 限期办结",
         "at": datetime(2026, 12, 1, 2, 0, tzinfo=UTC), "data": {"due": None}},
        {"version": 3, "type": "ReturnVisited", "label": "回访", "actor": "calltaker",
         "role": "call_taker", "reason": None, "at": datetime(2026, 12, 2, 4, 0, tzinfo=UTC),
         "data": {"satisfaction": "dissatisfied", "comment": "还是很脏"}},
    ]
    photos = [{**photo, "version": 1, "label": "上报"}]
    return {"case": case, "timeline": timeline, "names": {"calltaker": "李受理"},
            "photos": photos, "orders": [timeline[1]]}


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_case_file_and_supervision_order_say_who_did_what_in_chinese() -> None:
    data = _case_data()
    place = render.place_names(REF, data["case"])
    pdf = render.case_file_pdf(data, place, "贵阳市", NOW, {data["photos"][0]["digest"]: _png()})
    text = _text(pdf)
    for expected in ("贵阳市 城市网格化管理 案卷", "GD-1234-5678-9ABC", "生成于 2026-12-05 09:30",
                     "上报时间 2026-12-01 09:30", "李受理", "督办", "群众反映强烈, 限期办结",
                     "还是很脏", "不满意", "紧急", "热线", "(SJ0101)", "137****1234", "现场.png"):
        assert expected in text, expected
    assert "13700001234" not in text
    own = {**data, "case": {**data["case"], "reporter_name": None, "reporter_phone": None,
                            "reporter_type": "inspector"}}
    own_text = _text(render.case_file_pdf(own, place, "贵阳市", NOW))
    assert "上报人 网格员 李受理" in own_text  # an inspector's own report names the inspector
    reader = PdfReader(io.BytesIO(pdf))
    assert sum(len(page.images) for page in reader.pages) == 1  # the photo is in the file
    order = _text(render.supervision_pdf(data, place, "贵阳市", NOW))
    for expected in ("督办单", "督办 1 次", "第 1 次", "督办时间 2026-12-01 10:00",
                     "群众反映强烈, 限期办结", "签收人"):
        assert expected in order, expected


def _report() -> dict[str, Any]:
    def row(key: str, name: str, on_time: float | None, closure: float) -> dict[str, Any]:
        metrics = {k: 3 for k in REPORT_METRICS}
        metrics.update(on_time_closure_rate=on_time, closure_rate=closure)
        return {"key": key, "name": name, "counters": {}, "metrics": metrics}

    rows = rank([row("520103", "云岩区", 0.5, 0.9), row("520102", "南明区", 0.75, 0.8),
                 row("520111", "花溪区", 0.5, 0.9), row("520115", "观山湖区", None, 0.1)],
                "on_time_closure_rate")
    return {
        "city": "贵阳市", "from": "2026-11-01", "to": "2026-11-30",
        "rank_by": "on_time_closure_rate", "rank_by_zh": "按期结案率",
        "columns": [{"key": k, "zh": m.METRICS[k]["zh"], "kind": m.METRICS[k]["kind"],
                     "formula_zh": m.METRICS[k]["formula_zh"]} for k in REPORT_METRICS],
        "sections": [{"title": "区县排名", "grouping": "district", "rows": rows},
                     {"title": "部门排名", "grouping": "department", "rows": []}],
        "totals": {k: 0.5 if m.METRICS[k]["kind"] == "rate" else 12 for k in REPORT_METRICS},
    }


def test_ranking_best_first_ties_share_a_rank_and_nothing_to_rate_comes_last() -> None:
    rows = _report()["sections"][0]["rows"]
    assert [(r["name"], r["rank"]) for r in rows] == [
        ("南明区", 1), ("云岩区", 2), ("花溪区", 2), ("观山湖区", None)]


def test_evaluation_workbook_and_pdf() -> None:
    report = _report()
    wb = load_workbook(io.BytesIO(render.evaluation_xlsx(report, NOW)))
    assert wb.sheetnames == ["总览", "区县排名", "部门排名"]
    ws = wb["区县排名"]
    header = [c.value for c in ws[1]]
    assert header[:2] == ["排名", "名称"] and m.METRICS["reopen_rate"]["zh"] in header
    col = header.index(m.METRICS["on_time_closure_rate"]["zh"]) + 1
    assert [ws.cell(r, 2).value for r in range(2, 6)] == ["南明区", "云岩区", "花溪区", "观山湖区"]
    assert [ws.cell(r, 1).value for r in range(2, 6)] == [1, 2, 2, None]
    assert ws.cell(2, col).value == 0.75 and ws.cell(2, col).number_format == "0.00%"
    overview = wb["总览"]
    cells = [c.value for row in overview.iter_rows() for c in row if c.value is not None]
    assert "2026-11-01 至 2026-11-30" in cells and "按期结案率" in cells
    text = _text(render.evaluation_pdf(report, NOW))
    for expected in ("贵阳市 城市网格化管理 综合评价报告", "统计期 2026-11-01 至 2026-11-30",
                     "区县排名", "南明区", "75.00%", "部门排名", "本期无数据", "指标定义"):
        assert expected in text, expected
