"""Jurisdiction scoping (辖区权限) and the access-rule table of the whole API.

Which cases a caller may see (DOMAIN.md, "People and roles"):

==============  =====================================================================
role            cases visible
==============  =====================================================================
inspector       cases in their own grids (``principal.grids``)
call_taker      cases located at or below their centre's node (``principal.node``)
shift_leader    idem
dispatcher      idem: own node and everything below it
supervisor      idem
handler         cases currently dispatched to their department
auditor         every case, read-only (each request logged in ``audit_reads``)
admin           none: configuration and users only
system          every case (in-process callers only, never a token)
==============  =====================================================================

A case outside the caller's jurisdiction does not exist for them: **404**, never 403, so the
API does not leak which case numbers exist. Use the helpers, never ad-hoc checks:

* :func:`can_see` (a case row → bool), :func:`load_case` (case_no → row or 404),
* :func:`case_filter` (an SQL condition for list queries over ``case_queue``-shaped columns),
* :func:`visible_grids` (grid codes, or None for all: streams, maps, metrics),
* role groups :data:`CASE_READERS`, :data:`CASE_ACTORS`, :data:`REPORTERS`, :data:`ADMINS`
  to pass to ``require(...)``.

The rule table: each route's rule is its ``require(...)`` / ``current_principal`` /
``public`` dependency (see :mod:`gateways.http.identity`); routes that cannot carry a
dependency (FastAPI's docs, mounted static files) are listed in :data:`STATIC_RULES`.
:func:`effective_rule` reads them; the access-matrix test and the OpenAPI security section
are generated from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import BaseRoute

from aggregates.actions import PUBLIC_ACTIONS, REGISTRY
from core.jurisdiction import Jurisdiction
from core.users import HUMAN_ROLES, NODE_ROLES, SCOPES
from gateways.http.errors import ApiError
from gateways.http.identity import Principal, Rule, rule_of_dependency

# --------------------------------------------------------------------------- role groups

REPORT_ROLES = next(spec.roles for spec in REGISTRY.values() if spec.creates)

ALL_ROLES: tuple[str, ...] = HUMAN_ROLES
#: Everyone who reads case files (auditors read-only).
CASE_READERS: tuple[str, ...] = (
    "inspector",
    "call_taker",
    "shift_leader",
    "dispatcher",
    "handler",
    "supervisor",
    "auditor",
)
#: Everyone who runs lifecycle commands: the people some public action of the registry names
#: (the aggregate then checks role × action × state).
CASE_ACTORS: tuple[str, ...] = tuple(
    r for r in HUMAN_ROLES if any(r in REGISTRY[a].roles for a in PUBLIC_ACTIONS)
)
#: Who submits reports (上报): the people the registry's creating action names.
REPORTERS: tuple[str, ...] = tuple(r for r in HUMAN_ROLES if r in REPORT_ROLES)
#: Command-centre staff (queues, metrics, the live map).
COMMAND_CENTRE: tuple[str, ...] = ("call_taker", "shift_leader", "dispatcher", "supervisor")
ADMINS: tuple[str, ...] = ("admin",)

#: Routes without dependencies: FastAPI's documentation (public). Add a mounted UI here.
STATIC_RULES: dict[str, Rule] = {
    "/openapi.json": Rule(None),
    "/docs": Rule(None),
    "/docs/oauth2-redirect": Rule(None),
    "/redoc": Rule(None),
}


# --------------------------------------------------------------------------- visibility


def jurisdiction_of(request: Request) -> Jurisdiction:
    j: Jurisdiction = request.app.state.runtime.ref.jurisdiction
    return j


def sees_everything(principal: Principal) -> bool:
    return principal.role in ("auditor", "system")


def within_node(node: str | None, case: Mapping[str, Any], j: Jurisdiction) -> bool:
    """True when the case's location (grid, else community / district / owning node) lies at
    or below ``node``."""
    if not node or (node not in j.nodes and node not in j.grids):
        return False
    for key in ("grid", "community", "district", "node"):
        code = case.get(key)
        if isinstance(code, str) and (code in j.grids or code in j.nodes):
            return j.contains(node, code)
    return False


def can_see(principal: Principal, case: Mapping[str, Any], j: Jurisdiction) -> bool:
    """May ``principal`` see this case (a row with ``grid``, ``district``, ``department``…)?"""
    role = principal.role
    if sees_everything(principal):
        return True
    if role == "inspector":
        return case.get("grid") in principal.grids
    if role == "handler":
        return principal.department is not None and case.get("department") == principal.department
    if role in NODE_ROLES:
        return within_node(principal.node, case, j)
    return False


def visible_grids(principal: Principal, j: Jurisdiction) -> list[str] | None:
    """Grid codes whose cases the caller may see by location; None means all grids. Handlers
    see by department, not location: they get None here and must filter on department."""
    if sees_everything(principal) or principal.role == "handler":
        return None
    if principal.role == "inspector":
        return sorted(g for g in principal.grids if g in j.grids)
    if principal.role in NODE_ROLES and principal.node in j.nodes:
        if principal.node == j.city_code:
            return None
        return j.grids_under(principal.node)
    return []


def case_filter(principal: Principal, j: Jurisdiction, params: list[Any], alias: str = "") -> str:
    """An SQL condition limiting ``case_queue``-shaped rows (columns ``grid``, ``community``,
    ``district``, ``department``) to the caller's jurisdiction. Appends its parameters to
    ``params`` (asyncpg ``$n`` numbering continues from there)::

        params: list[Any] = []
        where = [case_filter(principal, j, params)]
    """
    col = f"{alias}." if alias else ""
    role = principal.role
    if sees_everything(principal):
        return "TRUE"
    if role == "inspector":
        params.append(list(principal.grids))
        return f"{col}grid = ANY(${len(params)}::text[])"
    if role == "handler":
        if not principal.department:
            return "FALSE"
        params.append(principal.department)
        return f"{col}department = ${len(params)}"
    if role in NODE_ROLES:
        node = principal.node
        if not node or node not in j.nodes:
            return "FALSE"
        if node == j.city_code:
            return "TRUE"
        level = j.nodes[node].level
        params.append(node)
        if len(j.levels) > 2 and level == j.levels[1].key:
            return f"{col}district = ${len(params)}"
        if level == j.levels[-2].key:
            return f"{col}community = ${len(params)}"
        params[-1] = j.grids_under(node)
        return f"{col}grid = ANY(${len(params)}::text[])"
    return "FALSE"


def case_not_found(case_no: str) -> ApiError:
    return ApiError(404, "not_found", f"case {case_no} not found")


async def load_case(
    request_or_runtime: Any, principal: Principal, case_no: str, columns: str = "*"
) -> dict[str, Any]:
    """The ``case_queue`` row of ``case_no`` if the caller may see it, else 404 (the same
    404 as for a case that does not exist)."""
    runtime = getattr(getattr(request_or_runtime, "app", None), "state", None)
    runtime = runtime.runtime if runtime is not None else request_or_runtime
    async with runtime.pool.acquire() as conn:
        record = await conn.fetchrow(
            f"SELECT {columns} FROM case_queue WHERE case_no = $1", case_no
        )
    if record is None:
        raise case_not_found(case_no)
    row = dict(record)
    if not can_see(principal, row, runtime.ref.jurisdiction):
        raise case_not_found(case_no)
    return row


def check_report_location(principal: Principal, grid: str, j: Jurisdiction) -> None:
    """Inspectors report in their own grids, call-takers for their centre's area (403)."""
    if principal.role == "inspector" and grid not in principal.grids:
        raise ApiError(
            403,
            "outside_jurisdiction",
            f"grid {grid} is not one of your grids",
            field="grid",
            grids=list(principal.grids),
        )
    if principal.role in NODE_ROLES and not within_node(principal.node, {"grid": grid}, j):
        raise ApiError(
            403,
            "outside_jurisdiction",
            f"grid {grid} is outside your centre's area ({principal.node})",
            field="grid",
        )


# --------------------------------------------------------------------------- rule table


def _rules_in(dependant: Dependant) -> list[Rule]:
    found: list[Rule] = []
    for dep in dependant.dependencies:
        rule = rule_of_dependency(dep.call)
        if rule is not None:
            found.append(rule)
        found.extend(_rules_in(dep))
    return found


def _combine(rules: Sequence[Rule]) -> Rule:
    guarded = [r for r in rules if not r.public]
    if not guarded:
        return Rule(None)
    roles: frozenset[str] = guarded[0].roles or frozenset()
    scopes: list[str] = []
    for r in guarded:
        roles &= r.roles or frozenset()
        scopes.extend(s for s in r.scopes if s not in scopes)
    return Rule(
        roles,
        tuple(scopes),
        query_token=all(r.query_token for r in guarded),
        rate=next((r.rate for r in guarded if r.rate), None),
    )


def iter_routes(app: FastAPI) -> Iterator[Any]:
    """Every route of the app with its effective (included-router) context: FastAPI >= 0.16x
    keeps included routers as ``_IncludedRouter`` entries in ``app.routes`` and exposes the
    flattened view through ``fastapi.routing.iter_route_contexts``."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if contexts is None:
        yield from app.routes
    else:
        yield from contexts(app.routes)


def original_route(route: Any) -> BaseRoute:
    original: BaseRoute = getattr(route, "original_route", route)
    return original


def effective_rule(route: Any) -> Rule | None:
    """The access rule of a route (or route context), or None when it has none — a bug the
    access-matrix test catches."""
    if isinstance(original_route(route), APIRoute | APIWebSocketRoute):
        dependant = getattr(route, "dependant", None)
        rules = _rules_in(dependant) if dependant is not None else []
        if rules:
            return _combine(rules)
    path = getattr(route, "path", None)
    return STATIC_RULES.get(path) if isinstance(path, str) else None


def routes_without_rule(app: FastAPI) -> list[str]:
    missing = []
    for route in iter_routes(app):
        if effective_rule(route) is None:
            methods = ",".join(sorted(getattr(route, "methods", None) or ["*"]))
            missing.append(f"{methods} {getattr(route, 'path', route)}")
    return missing


# --------------------------------------------------------------------------- OpenAPI

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable code"},
        "message": {"type": "string", "description": "what was wrong, for people"},
    },
    "additionalProperties": True,
}
_ERROR_TEXT = {
    401: "no, invalid, expired or revoked token (WWW-Authenticate: Bearer)",
    403: "role, scope or jurisdiction does not allow this",
    404: "not found (or outside your jurisdiction)",
    413: "request body too large",
    422: "invalid input; the body names the problem",
    429: "rate limited (Retry-After)",
}


def install_openapi(app: FastAPI) -> None:
    """Generate the OpenAPI document with each operation's security (scopes from its rule)
    and the shared error responses, so clients and schemathesis know every status."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        components["securitySchemes"] = {
            "OAuth2": {
                "type": "oauth2",
                "description": "sign in with username and password (POST /v1/auth/token)",
                "flows": {"password": {"tokenUrl": "/v1/auth/token", "scopes": dict(SCOPES)}},
            },
            "DeviceToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "a device token (POST /v1/auth/devices) as Bearer",
            },
        }
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for route in iter_routes(app):
            if not isinstance(original_route(route), APIRoute) or not route.include_in_schema:
                continue
            rule = effective_rule(route)
            path_item = schema.get("paths", {}).get(route.path_format, {})
            for method in route.methods or ():
                op = path_item.get(method.lower())
                if op is None or rule is None:
                    continue
                responses = op.setdefault("responses", {})
                statuses: list[int] = [422]
                if type(original_route(route)) is not APIRoute:
                    # A custom route class (e.g. Open311's) renders its own error format.
                    if not rule.public:
                        op["security"] = [{"OAuth2": list(rule.scopes)}, {"DeviceToken": []}]
                    continue
                if rule.public:
                    op["security"] = []
                else:
                    op["security"] = [{"OAuth2": list(rule.scopes)}, {"DeviceToken": []}]
                    statuses += [401, 403]
                if rule.rate:
                    statuses.append(429)
                if route.body_field is not None:
                    statuses.append(413)
                if route.dependant.path_params or not rule.public:
                    # Anything guarded may answer "not found (or not yours)" (jurisdiction).
                    statuses.append(404)
                for status in statuses:
                    entry = responses.setdefault(str(status), {"description": _ERROR_TEXT[status]})
                    if status == 422 or "content" not in entry or _empty_schema(entry):
                        entry["content"] = ref
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _empty_schema(entry: dict[str, Any]) -> bool:
    content = entry.get("content", {}).get("application/json")
    return content is not None and not content.get("schema")
