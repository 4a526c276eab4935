"""Every refusal is a 4xx with one machine-readable body shape:

    {"error": "<code>", "message": "<human text>", ...details}

so clients (the inspector app, Open311 bridges, scripts) can branch on ``error`` without
parsing prose.

Invalid input that pydantic refuses — a request body FastAPI could not parse, one item of
``POST /v1/reports/batch``, the arguments of a lifecycle command — always becomes the same
``validation_error`` body via :func:`validation_error`::

    {"error": "validation_error", "message": "description: Field required",
     "problems": [{"field": "description", "message": "Field required", "type": "missing"}]}
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any, cast

import asyncpg
import nats.errors
import nats.js.errors
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.logging import get_logger

log = get_logger("gateway")


class ApiError(Exception):
    """Raise from a route to refuse with a given status and code."""

    def __init__(self, status: int, error: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": error, "message": message, **details}


#: What a refusal means, in Simplified Chinese (the language of the people who read it), per
#: machine-readable code: the ``message`` of an ``ApiError`` body starts with it, followed by
#: the specifics (``未找到: unknown node X``). ``error`` stays the stable English code
#: programs branch on; a message already in Chinese is left as it is. ``validation_error``
#: keeps its documented shape (``field: problem; …``, the same in a batch item).
PEOPLE_MESSAGES: dict[str, str] = {
    "not_found": "未找到",
    "invalid_period": "时间段无效",
    "unknown_grid": "未知网格",
    "unknown_action": "未知操作",
    "unknown_place": "未知地点",
    "unknown_component": "未知部件",
    "invalid_bbox": "地图范围无效",
    "unknown_metric": "未知指标",
    "broker_unavailable": "消息服务暂不可用, 请稍后重试",
    "store_unavailable": "数据库暂不可用, 请稍后重试",
    "forbidden": "无权限",
    "outside_jurisdiction": "超出您的辖区",
    "need_to_know": "仅限相关人员查看",
    "weak_password": "密码强度不足",
    "user_exists": "用户已存在",
    "cannot_lock_out_self": "不能停用或降级自己的账号",
    "illegal_transition": "当前状态不允许此操作",
    "not_permitted": "无权执行此操作",
    "invalid_command": "命令无效",
    "missing_location": "缺少位置",
    "invalid_location": "位置无效",
    "no_grid": "该位置不在任何网格内",
    "not_supervised": "该案件未督办",
    "read_only": "只读",
    "invalid_cursor": "分页参数无效",
    "invalid_url": "网址无效",
    "invalid_digest": "照片摘要无效",
    "payload_too_large": "请求内容过大",
    "rate_limited": "请求过于频繁, 请稍后再试",
    "unauthorized": "未登录或登录已失效, 请重新登录",
    "insufficient_scope": "当前令牌无此权限",
    "token_expired": "登录已过期, 请刷新或重新登录",
    "invalid_token": "令牌无效, 请重新登录",
    "invalid_grant": "登录凭据无效, 请重新登录",
}


def _has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def for_people(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with its ``message`` led by the code's zh-Hans meaning (see PEOPLE_MESSAGES)."""
    words = PEOPLE_MESSAGES.get(str(body.get("error", "")))
    message = str(body.get("message") or "")
    if not words or _has_chinese(message):
        return body
    return {**body, "message": f"{words}: {message}" if message else words}


#: How many problems the one-line ``message`` names; ``problems`` always lists them all.
MESSAGE_PROBLEMS = 5


def validation_error(errors: Iterable[Mapping[str, Any]]) -> ApiError:
    """The 422 ``validation_error`` refusal for pydantic's ``errors()`` (of a
    ``ValidationError`` or FastAPI's ``RequestValidationError``).

    One builder for every place that validates client input, so a client parses one shape
    whichever endpoint refused it. Each problem names its ``field`` as a dotted path relative
    to the body the client sent (FastAPI's leading ``"body"`` location is dropped; ``query`` /
    ``path`` / ``header`` stay, they say where to look); pydantic's ``input`` and ``ctx`` are
    left out, as they may echo large or non-JSON values back."""
    problems: list[dict[str, str]] = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if loc[:1] == ("body",):
            loc = loc[1:]
        problems.append(
            {
                "field": ".".join(str(p) for p in loc),
                "message": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    message = "; ".join(
        f"{p['field'] or 'body'}: {p['message']}" for p in problems[:MESSAGE_PROBLEMS]
    )
    return ApiError(422, "validation_error", message, problems=problems)


#: Seconds a client is asked to wait (``Retry-After``) when a dependency is down: the
#: supervisor restarts a dead server within about this long (docs/reliability.md).
RETRY_AFTER_S = 2

#: SQLSTATE classes caused by the input a client sent (values out of range, malformed text,
#: a NULL where the column has none, a broken foreign key): the client's fault, 422.
_INPUT_SQLSTATE_CLASSES = ("22", "23")
#: SQLSTATEs of a database that is going away, starting, overloaded or busy resolving a
#: conflict: nobody's fault, try again — 503 with Retry-After.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03", "40001", "40P01")

#: Broker errors that mean "NATS is not there right now" (disconnected, reconnecting, no
#: JetStream answer). Other nats errors are bugs and stay 500.
_BROKER_DOWN: tuple[type[Exception], ...] = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoRespondersError,
    nats.errors.TimeoutError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)


def unavailable(dependency: str) -> JSONResponse:
    """The 503 every outage answers: machine-readable, with ``Retry-After``, so a client
    retries with the same Idempotency-Key instead of reading a traceback."""
    return JSONResponse(
        {
            "error": f"{dependency}_unavailable",
            "message": f"the {dependency} is unavailable; retry with the same request",
            "retry_after_s": RETRY_AFTER_S,
        },
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _input_refusal(sqlstate: str, detail: str) -> JSONResponse:
    """422 (409 for a unique violation) for a database error the input caused. The database's
    own message names the value or column; it never carries other rows' data."""
    if sqlstate == "23505":
        return JSONResponse(
            {"error": "conflict", "message": "already exists", "sqlstate": sqlstate},
            status_code=409,
        )
    return JSONResponse(
        {"error": "invalid_value", "message": detail[:300], "sqlstate": sqlstate},
        status_code=422,
    )


def classify_database_error(exc: BaseException) -> str:
    """``"input"``, ``"unavailable"`` or ``"bug"`` for a PostgreSQL error of either driver
    (asyncpg on the read side, psycopg under eventsourcing)."""
    sqlstate = str(getattr(exc, "sqlstate", None) or "")
    if isinstance(exc, asyncpg.DataError) and not sqlstate:
        return "input"  # asyncpg refused to encode an argument (e.g. beyond int8)
    if sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return "unavailable"
    if sqlstate.startswith(_INPUT_SQLSTATE_CLASSES):
        return "input"
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return "unavailable"  # no SQLSTATE: connection lost, pool timeout
    return "bug"


async def handled(request: Request, exc: Exception) -> Response | None:
    """The app's own answer to ``exc``, from the handler Starlette's ``ExceptionMiddleware``
    would pick (the most specific class in its MRO); None when only the ``Exception``
    handler fits — that one belongs to the server-error middleware, which answers 500 and
    re-raises so the traceback is logged. For code that answers outside the routes' own
    exception handling (the intake fast path, Open311's spec-shaped errors)."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            answer = handlers[cls](request, exc)
            return cast(Response, await answer if inspect.isawaitable(answer) else answer)
    return None


def install(app: FastAPI) -> None:
    """The exception handlers: every refusal a JSON body, every outage a 503.

    Mapped by class, not endpoint by endpoint: whatever route an oversized integer, a NULL
    for a NOT NULL column or an unreachable database reaches, the client gets the same
    answer (issue 15)."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
        return JSONResponse(for_people(exc.body), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        refusal = validation_error(exc.errors())
        return JSONResponse(for_people(refusal.body), status_code=refusal.status)

    @app.exception_handler(asyncpg.PostgresError)
    @app.exception_handler(psycopg.Error)
    async def _database_error(request: Request, exc: Exception) -> JSONResponse:
        kind = classify_database_error(exc)
        if kind == "input":
            log.info("http.invalid_value", error=repr(exc)[:300])
            return _input_refusal(str(getattr(exc, "sqlstate", None) or "22000"), str(exc))
        if kind == "unavailable":
            log.warning("http.dependency_unavailable", dependency="database",
                        error=repr(exc)[:300])
            return unavailable("database")
        return _internal(request, exc)

    @app.exception_handler(asyncpg.InterfaceError)
    # A connection lost in the middle of an operation can leave asyncpg's protocol in a state
    # it refuses to leave ("cannot switch to state …"): the database went away, not a bug.
    @app.exception_handler(asyncpg.exceptions.InternalClientError)
    @app.exception_handler(OSError)  # ConnectionRefusedError, asyncpg's multi-address OSError
    @app.exception_handler(TimeoutError)  # a pool that could not hand out a connection
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            return _internal(request, exc)
        # A dependency outage is not the caller's fault and not a bug: 503 + Retry-After, one
        # structured log line, and the client retries with the same Idempotency-Key.
        log.warning("http.dependency_unavailable", dependency="database", error=repr(exc)[:300])
        return unavailable("database")

    async def _broker_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("http.dependency_unavailable", dependency="broker", error=repr(exc)[:300])
        return unavailable("broker")

    for cls in _BROKER_DOWN:
        app.add_exception_handler(cls, _broker_down)

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback (it re-raises after this answer); the client gets the
        # same JSON shape as every other refusal instead of a text/plain page.
        return JSONResponse(
            {"error": "internal_error", "message": "internal error; it has been logged"},
            status_code=500,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            403: "forbidden",
            413: "too_large",
            429: "rate_limited",
        }
        return JSONResponse(
            {"error": codes.get(exc.status_code, "http_error"), "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )


def _internal(request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback, answered 500 with a JSON body naming the request id
    (the same shape as every refusal, so a client never has to parse HTML or plain text)."""
    log.error("http.internal_error", path=request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": "internal_error", "message": "internal error; it has been logged"},
        status_code=500,
    )
