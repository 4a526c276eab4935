"""Reference data the forms and validators use: categories, grids, departments, the tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from aggregates.actions import PUBLIC_ACTIONS, REGISTRY
from core.basemap import MAX_VECTOR_BYTES, vector_path
from core.refdata import Reference
from core.vocabulary import terms
from gateways.http.deps import get_reference
from gateways.http.errors import ApiError
from gateways.http.identity import current_principal, public

#: Any signed-in user may read reference data (forms, maps, validators).
router = APIRouter(
    prefix="/v1", tags=["reference 基础数据"], dependencies=[Depends(current_principal)]
)


@router.get("/categories")
async def list_categories(
    ref: Reference = Depends(get_reference),
    q: str | None = Query(default=None, max_length=100, description="search zh / en"),
    kind: str | None = Query(default=None, max_length=20),
) -> dict[str, Any]:
    """The category catalogue (部件 / 事件 / 网格治理) with limits and conditions."""
    catalogue = ref.catalogue
    cats = catalogue.search(q) if q else catalogue.all()
    if kind:
        cats = [c for c in cats if c.kind == kind]
    return {"version": catalogue.version, "items": [c.model_dump() for c in cats]}


@router.get("/grids", responses={404: {"description": "unknown node"}})
async def list_grids(
    ref: Reference = Depends(get_reference),
    under: str | None = Query(default=None, max_length=40, description="a node code"),
) -> dict[str, Any]:
    """Unit grids (网格): code, name, community, centroid."""
    j = ref.jurisdiction
    if under is not None and under not in j.nodes and under not in j.grids:
        raise ApiError(404, "not_found", f"unknown node {under}")
    codes = j.grids_under(under) if under else sorted(j.grids)
    items = []
    for code in codes:
        grid = j.grid(code)
        lat, lon = grid.centroid
        items.append(
            {
                "code": grid.code,
                "name_zh": grid.name_zh,
                "name_en": grid.name_en,
                "community": grid.parent,
                "district": j.partition_of(code),
                "lat": round(lat, 6),
                "lon": round(lon, 6),
                "households": grid.households,
                "parents": [n.code for n in j.ancestors(code)],
                "team": grid.team.model_dump(),
                "polygon": {
                    "type": "Polygon",
                    "coordinates": [[list(p) for p in [*grid.polygon, grid.polygon[0]]]],
                },
            }
        )
    return {"items": items, "count": len(items)}


@router.get("/grids.geojson", responses={404: {"description": "unknown node"}})
async def grids_geojson(
    ref: Reference = Depends(get_reference),
    under: str | None = Query(default=None, max_length=40),
) -> dict[str, Any]:
    """Grid polygons as GeoJSON for the command-centre map."""
    j = ref.jurisdiction
    if under is not None and under not in j.nodes and under not in j.grids:
        raise ApiError(404, "not_found", f"unknown node {under}")
    return j.to_geojson(under)


@router.get("/jurisdiction")
async def jurisdiction_tree(ref: Reference = Depends(get_reference)) -> dict[str, Any]:
    """Levels and nodes of the jurisdiction tree (grids listed separately), and the city's
    base map (``basemap``: tile source, zoom range, coordinate system, offline vector layer;
    null when the city has none — docs/basemap.md)."""
    j = ref.jurisdiction
    return {
        "city": {"code": j.city_code, "name_zh": j.name_zh, "name_en": j.name_en},
        "levels": [lv.model_dump() for lv in j.levels],
        "nodes": [n.model_dump() for n in j.nodes.values()],
        "basemap": j.basemap.public(VECTOR_URL) if j.basemap else None,
    }


#: Where the pages fetch the city's offline street and landmark layer.
VECTOR_URL = "/v1/basemap/vector.geojson"
#: Public like the tiles of a tile server (no token: the inspector app's service worker
#: caches it for offline use); it holds streets and landmarks, nothing about cases.
basemap_router = APIRouter(prefix="/v1", tags=["reference 基础数据"])


@basemap_router.get(
    "/basemap/vector.geojson",
    dependencies=[Depends(public)],
    responses={404: {"description": "the city has no vector base layer"}},
    response_class=FileResponse,
)
async def basemap_vector(ref: Reference = Depends(get_reference)) -> FileResponse:
    """The city's offline street and landmark layer (GeoJSON, WGS-84): roads with ``class``
    (trunk, primary, secondary, street, lane) and ``name``, landmarks (``layer: poi``) with
    ``kind`` and ``name``. Drawn under the grids when no tile server is reachable."""
    j = ref.jurisdiction
    path = vector_path(j.basemap, Path(j.source).parent)
    if path is None or not path.is_file():
        raise ApiError(404, "not_found", "this city has no vector base layer")
    if path.stat().st_size > MAX_VECTOR_BYTES:
        raise ApiError(404, "not_found", f"{path.name} is larger than {MAX_VECTOR_BYTES} bytes")
    return FileResponse(
        path, media_type="application/geo+json",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/departments", responses={404: {"description": "unknown node"}})
async def list_departments(
    ref: Reference = Depends(get_reference),
    node: str | None = Query(default=None, max_length=40),
) -> dict[str, Any]:
    """Departments (处置部门) per node, with their function tags."""
    j = ref.jurisdiction
    if node is not None and node not in j.nodes:
        raise ApiError(404, "not_found", f"unknown node {node}")
    deps = j.departments_at(node) if node else list(j.departments.values())
    return {"items": [d.model_dump() for d in deps]}


@router.get("/people")
async def people(
    request: Request,
    ids: str = Query(max_length=8000, description="user ids, comma separated (at most 500)"),
) -> dict[str, Any]:
    """Display names of staff by user id (人员姓名), so pages show people by name, not by id
    (timelines, actors, handlers): ``{items: [{user_id, name, role, department}]}``. Ids that
    are not users (``system``, watchers, API keys) are left out; the page shows them as is.
    A grid team member of the city's layers without an account yet (the sample city's
    ``insp-<grid>`` ids) is named by grid and duty, like the demo users: 新华社区第一网格 网格员."""
    wanted = sorted({i.strip() for i in ids.split(",") if i.strip()})[:500]
    runtime = request.app.state.runtime
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT user_id, name, role, department FROM users WHERE user_id = ANY($1::text[])",
            wanted,
        )
    items = [dict(r) for r in rows]
    known = {r["user_id"] for r in items}
    j = runtime.ref.jurisdiction
    team = j.team_members(set(wanted) - known)
    names = j.team_names(team)
    for member, (grid, role) in sorted(team.items()):
        items.append({"user_id": member, "name": names[member], "role": role,
                      "department": None, "grid": grid.code})
    return {"items": items}


@router.get("/vocabulary")
async def vocabulary() -> dict[str, Any]:
    """The system's words with their labels (statuses, roles, priorities, deadline steps,
    satisfaction, reporter types, sources) and every action a person may ask for: its label,
    the roles that may, and the JSON Schema of its arguments. Pages build their labels and
    action forms from this; which actions a case offers comes with the case
    (``allowed_actions``)."""
    return {
        **terms(),
        "actions": [
            {
                "value": name,
                "label": REGISTRY[name].label,
                "roles": sorted(REGISTRY[name].roles - {"system"}),
                "args": REGISTRY[name].args.model_json_schema(),
            }
            for name in PUBLIC_ACTIONS
        ],
    }
