"""The FastAPI application: routers per audience over one runtime."""

from __future__ import annotations

from fastapi import FastAPI

from core.clock import Clock, SystemClock
from core.logging import get_logger
from core.users import IdentitySettings
from gateways.http import (
    access,
    audit,
    auth,
    cases,
    centre,
    components,
    documents,
    errors,
    health,
    households,
    identity,
    inputs,
    intake_fast,
    intake_pages,
    middleware,
    nearby,
    notifications,
    open311,
    pages,
    photos,
    places,
    ratelimit,
    reference,
    reporter_status,
    reports,
    return_visits,
    security,
    stream,
)
from gateways.runtime import Runtime


def create_app(
    runtime: Runtime, clock: Clock | None = None, identity_settings: IdentitySettings | None = None
) -> FastAPI:
    app = FastAPI(
        title="griddispatch",
        version="0.1.0",
        description=(
            "Grid management and case dispatch (网格化管理 · 12319). Reports are accepted "
            "asynchronously (202 + case number); lifecycle commands answer with the outcome."
        ),
        # No OpenTelemetry here (structlog and Prometheus are the instruments): with it on,
        # FastAPI asks the OpenTelemetry globals and the environment on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    app.state.clock = clock or SystemClock()
    app.state.identity = identity_settings or IdentitySettings()
    if runtime.settings.jwt_secret == "change-me-in-production":
        get_logger("gateway").warning(
            "auth.default_jwt_secret", note="set GRID_JWT_SECRET to a long random value"
        )
    basemap = runtime.ref.jurisdiction.basemap
    # A city's tile server may serve the pages' map tiles (img-src; gateways/http/security.py).
    app.state.csp_images = security.image_sources(basemap.url) if basemap else b""
    errors.install(app)
    identity.install(app)
    intake_fast.install(app)  # innermost: inside the request id and the body limit
    middleware.install(app)
    ratelimit.install(app)
    # nearby before cases: /v1/cases/nearby is not the case numbered "nearby".
    for module in (reports, nearby, cases, reference, health, auth, places):
        app.include_router(module.router)
    app.include_router(auth.admin_router)
    # Issue 17: the city's base map layer (public) and its components (部件).
    app.include_router(reference.basemap_router)
    app.include_router(components.router)
    # Intake (issue 6): photos, Open311, notifications, the inspector / department / hotline pages.
    for router in (photos.router, open311.router, open311.admin_router, notifications.router):
        app.include_router(router)
    app.include_router(intake_pages.router)
    app.include_router(centre.router)
    app.include_router(stream.router)
    app.include_router(return_visits.router)
    app.include_router(documents.router)
    app.include_router(reporter_status.router)
    # Auditors (issue 7): histories from the event store, integrity, exports, the /audit page.
    app.include_router(audit.router)
    app.include_router(audit.pages)
    # Households and care visits (issue 18).
    app.include_router(households.router)
    pages.install(app)
    # Every integer parameter without a bound gets PostgreSQL bigint's (issue 15).
    inputs.bound_integer_params(app)
    access.install_openapi(app)
    return app
