"""People and departments by name in the case file: a grid team member without an account
(the sample city's ``insp-<grid>``) is named by grid and duty, as GET /v1/people names them;
the timeline's departments by name, not code (issue 16, names not codes)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.refdata import load_reference
from core.settings import get_settings
from gateways import documents as render

REF = load_reference(get_settings())


def test_grid_team_members_are_named_by_grid_and_duty() -> None:
    j = REF.jurisdiction
    grid = j.grids["520102001003"]
    names = j.team_names([grid.team.inspector, grid.team.police, "nobody", "system"])
    assert names == {grid.team.inspector: f"{grid.name_zh} 网格员",
                     grid.team.police: f"{grid.name_zh} 网格民警"}
    assert j.team_names([]) == {}


def test_case_file_names_the_inspector_and_the_department() -> None:
    grid = REF.jurisdiction.grids["520102001003"]
    at = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)
    case = {"case_no": "GD-1234-5678-9ABC", "status": "dispatched", "status_zh": "已派遣(待接单)",
            "category": "SJ0101", "grid": grid.code, "community": grid.parent,
            "district": "520102", "reporter_type": "inspector", "reported_at": at}
    timeline = [
        {"version": 1, "type": "Reported", "label": "上报", "at": at,
         "actor": grid.team.inspector, "role": "inspector", "data": {}},
        {"version": 2, "type": "Dispatched", "label": "派遣", "at": at, "actor": "dispatcher-1",
         "role": "dispatcher", "data": {"department": "D-520102-sanitation"}},
    ]
    data = render.with_names(REF, {"case": case, "timeline": timeline,
                                   "names": {"dispatcher-1": "王芳"}, "photos": []})
    text = render.case_file_pdf(data, render.place_names(REF, case), "贵阳市", at)
    import io

    from pypdf import PdfReader

    words = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(text)).pages)
    assert f"上报人 {grid.name_zh} 网格员" in words
    assert "王芳" in words and "→ 南明区环卫局" in words
    assert grid.team.inspector not in words and "D-520102-sanitation" not in words
