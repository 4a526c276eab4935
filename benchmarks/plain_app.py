"""The plain alternative of issue 19: what a team would build instead of griddispatch's intake.

FastAPI + uvicorn, one process, no broker, no event store: a bearer JWT check (PyJWT, HS256,
verified on every request), griddispatch's own report body (``gateways.http.reports.ReportIn``)
and grid lookup (``core.jurisdiction``: shapely point-in-polygon), then one
``INSERT … ON CONFLICT (idempotency_key) DO NOTHING`` through asyncpg; ``GET`` by id reads the
row back. The batch endpoint writes up to 100 reports with one multi-row INSERT (``unnest``).

The id is the case number griddispatch would give the same idempotency key
(``core.ids.case_no_for_key``), so the load generator (``benchmarks.loadgen``) can drive both
systems unchanged and knows what to look for before the answer comes back. The table
``reports`` (in ``--schema``) has the columns the load generator polls: ``case_no`` and
``reported_at``.

    python -m benchmarks.plain_app --port 8400 --db postgresql://postgres@127.0.0.1:5432/test

Sign-in (``POST /v1/auth/token``) knows one user, ``calltaker`` / ``calltaker-demo``, as the
demo data has; it runs once per load-generator process and is not what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import jwt
import uvicorn
from fastapi import Depends, FastAPI, Form, Header, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from core.ids import case_no_for_key, new_key
from core.refdata import Reference, load_reference
from core.settings import Settings
from gateways.http.reports import MAX_BATCH, BatchIn, ReportIn

USERS = {"calltaker": "calltaker-demo"}
TABLE = "reports"

DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    case_no         text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    category        text NOT NULL,
    grid            text NOT NULL,
    district        text NOT NULL,
    lat             double precision,
    lon             double precision,
    address         text,
    description     text NOT NULL,
    reporter        jsonb,
    source          text NOT NULL,
    reported_by     text NOT NULL,
    reported_at     timestamptz NOT NULL DEFAULT now()
)
"""

COLUMNS = (
    "case_no, idempotency_key, category, grid, district, lat, lon, address, description, "
    "reporter, source, reported_by"
)
INSERT_ONE = (
    f"INSERT INTO {TABLE} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, "
    "$11, $12) ON CONFLICT (idempotency_key) DO NOTHING RETURNING case_no"
)
INSERT_MANY = (
    f"INSERT INTO {TABLE} ({COLUMNS}) SELECT c, k, cat, g, d, la, lo, a, de, r::jsonb, s, b "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], "
    "$7::float8[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]) "
    "AS t(c, k, cat, g, d, la, lo, a, de, r, s, b) "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING case_no"
)


class Refused(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def row_for(ref: Reference, body: ReportIn, key: str, user: str) -> tuple[Any, ...]:
    """The row of one report: category known, grid located (lat/lon or grid code)."""
    if body.category not in ref.catalogue:
        raise Refused(422, "unknown_category")
    j = ref.jurisdiction
    if body.lat is not None and body.lon is not None:
        if not j.in_city(body.lat, body.lon):
            raise Refused(422, "outside_city")
        located = j.locate(body.lat, body.lon)
        if located is None:
            raise Refused(422, "no_grid")
        grid = located.code
    elif body.grid in j.grids:
        grid = body.grid
    else:
        raise Refused(422, "missing_location")
    reporter = json.dumps(body.reporter.model_dump(mode="json")) if body.reporter else None
    return (
        case_no_for_key(key), key, body.category, grid, j.partition_of(grid), body.lat,
        body.lon, body.address, body.description, reporter, body.source, user,
    )


def create_app(database_url: str, schema: str, secret: str) -> FastAPI:
    """The app, its pool opened (and its table made) by the lifespan."""
    ref = load_reference(Settings())
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}"; {DDL}')
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(
            database_url, min_size=2, max_size=10,
            server_settings={"search_path": schema, "application_name": "plain-app"},
        )
        state["pool"] = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="plain INSERT app (issue 19 benchmark)", lifespan=lifespan)
    bearer = HTTPBearer()

    async def user(credentials: HTTPAuthorizationCredentials = Depends(bearer)) -> str:
        # async: a plain ``def`` dependency would run in a thread per request
        try:
            claims = jwt.decode(credentials.credentials, secret, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise HTTPException(401, "invalid token") from exc
        if "reports:create" not in claims.get("scope", "").split():
            raise HTTPException(403, "missing scope reports:create")
        return str(claims["sub"])

    @app.post("/v1/auth/token")
    async def token(username: str = Form(), password: str = Form()) -> dict[str, Any]:
        if USERS.get(username) != password:
            raise HTTPException(401, "wrong user or password")
        claims = {"sub": username, "scope": "reports:create", "exp": int(time.time()) + 3600}
        return {"access_token": jwt.encode(claims, secret, algorithm="HS256"),
                "token_type": "bearer"}

    @app.post("/v1/reports", status_code=202)
    async def post_report(
        body: ReportIn,
        who: str = Depends(user),
        idempotency_key: str | None = Header(default=None, min_length=8, max_length=200),
    ) -> JSONResponse:
        key = idempotency_key or body.idempotency_key or new_key()
        try:
            row = row_for(ref, body, key, who)
        except Refused as exc:
            return JSONResponse({"error": exc.error}, status_code=exc.status)
        made = await state["pool"].fetchval(INSERT_ONE, *row)
        return JSONResponse(
            {"case_no": row[0], "idempotency_key": key, "duplicate": made is None,
             "grid": row[3], "district": row[4]},
            status_code=202,
        )

    @app.post("/v1/reports/batch")
    async def post_batch(batch: BatchIn, who: str = Depends(user)) -> JSONResponse:
        rows: list[tuple[Any, ...]] = []
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        for index, raw in enumerate(batch.reports[:MAX_BATCH]):
            try:
                body = ReportIn.model_validate(raw)
                if body.idempotency_key is None:
                    raise Refused(422, "missing_idempotency_key")
                if body.idempotency_key in seen:
                    raise Refused(422, "duplicate_in_batch")
                seen.add(body.idempotency_key)
                rows.append(row_for(ref, body, body.idempotency_key, who))
                results.append({"index": index, "case_no": rows[-1][0]})
            except ValidationError:
                results.append({"index": index, "status": "refused", "error": "invalid"})
            except Refused as exc:
                results.append({"index": index, "status": "refused", "error": exc.error})
        made: set[str] = set()
        if rows:
            columns = [list(c) for c in zip(*rows, strict=True)]
            made = {r["case_no"] for r in await state["pool"].fetch(INSERT_MANY, *columns)}
        for item in results:
            if "case_no" in item:
                item.update(status="accepted", duplicate=item["case_no"] not in made)
        return JSONResponse(
            {"accepted": len(rows), "refused": len(results) - len(rows), "results": results}
        )

    @app.get("/v1/reports/{case_no}")
    async def get_report(case_no: str, _: str = Depends(user)) -> JSONResponse:
        row = await state["pool"].fetchrow(f"SELECT * FROM {TABLE} WHERE case_no = $1", case_no)
        if row is None:
            raise HTTPException(404, "no such report")
        out = dict(row)
        out["reported_at"] = out["reported_at"].isoformat()
        out["reporter"] = json.loads(out["reporter"]) if out["reporter"] else None
        return JSONResponse(out)

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ok" if "pool" in state else "starting"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8400)
    parser.add_argument("--db", default=os.environ.get(
        "PLAIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--schema", default="plain")
    parser.add_argument("--secret", default=os.environ.get(
        "PLAIN_JWT_SECRET", "plain-app-benchmark-secret-of-32-bytes-or-more"))
    a = parser.parse_args()
    app = create_app(a.db, a.schema, a.secret)
    # The same server settings as griddispatch's gateway (gateways/http/server.py).
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
