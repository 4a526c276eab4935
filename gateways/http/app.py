"""The FastAPI application: routers per audience over one runtime."""

from __future__ import annotations

from fastapi import FastAPI

from core.clock import Clock, SystemClock
from gateways.http import cases, errors, health, middleware, reference, reports
from gateways.runtime import Runtime


def create_app(runtime: Runtime, clock: Clock | None = None) -> FastAPI:
    app = FastAPI(
        title="griddispatch",
        version="0.1.0",
        description=(
            "Grid management and case dispatch (網格化管理 · 12319). Reports are accepted "
            "asynchronously (202 + case number); lifecycle commands answer with the outcome."
        ),
    )
    app.state.runtime = runtime
    app.state.clock = clock or SystemClock()
    errors.install(app)
    middleware.install(app)
    for module in (reports, cases, reference, health):
        app.include_router(module.router)
    return app
