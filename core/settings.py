"""Runtime settings, read once from the environment (prefix-free names, as operators expect).

Why pydantic-settings: every knob is typed and validated at start-up, so a typo in a URL or a
negative batch size fails loudly before anything is accepted from a citizen.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """All configuration of one griddispatch process."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    nats_url: str | None = Field(default=None, description="External NATS; embedded when unset")
    database_url: str | None = Field(
        default=None, description="External PostgreSQL; embedded when unset"
    )
    database_read_url: str | None = Field(
        default=None,
        description="A streaming replica (hot standby) for the command centre's read-model "
        "queries (queue, map, metrics); the primary when unset or unreachable",
    )
    state_dir: Path = Field(default=Path(".state"), alias="GRID_STATE_DIR")
    city_dir: Path = Field(default=REPO_ROOT / "deploy" / "cities" / "guiyang", alias="GRID_CITY")
    categories_file: Path = Field(
        default=REPO_ROOT / "deploy" / "categories.v1.json", alias="GRID_CATEGORIES"
    )
    http_host: str = Field(default="127.0.0.1", alias="GRID_HTTP_HOST")
    http_port: int = Field(default=8319, alias="GRID_HTTP_PORT")
    health_port: int | None = Field(
        default=None, alias="GRID_HEALTH_PORT",
        description="serve /healthz and /readyz on this port from a role without HTTP "
        "(worker, relay, …) for orchestrator probes; bound to GRID_HTTP_HOST",
    )
    stream_prefix: str = Field(
        default="GRID",
        alias="GRID_STREAM_PREFIX",
        description="Prefix of JetStream streams and subjects; tests use a unique one each",
    )
    db_schema: str = Field(default="public", alias="GRID_DB_SCHEMA")
    worker_batch: int = Field(default=500, ge=1, le=10_000, alias="GRID_WORKER_BATCH")
    relay_batch: int = Field(default=1_000, ge=1, le=50_000, alias="GRID_RELAY_BATCH")
    batch_linger_ms: float = Field(
        default=20.0, ge=0, le=1000, alias="GRID_BATCH_LINGER_MS",
        description="worker, relay and projector wait this long for a batch to fill once "
        "its first message is there (batching under moderate load; adds at most this much "
        "latency per stage at low load)",
    )
    batch_linger_from_rate: float = Field(
        default=150.0, ge=0, alias="GRID_BATCH_LINGER_FROM_RATE",
        description="messages per second from which a stage lingers (core.pull.Linger); "
        "below it every message is handled at once (low latency); 0 = always linger",
    )
    max_deliver: int = Field(default=5, ge=1, alias="GRID_MAX_DELIVER")
    dedupe_window_s: float = Field(default=120.0, gt=0, alias="GRID_DEDUPE_WINDOW")
    stream_replicas: int = Field(
        default=1, ge=1, le=5, alias="GRID_STREAM_REPLICAS",
        description="JetStream replicas of the streams (and their consumers): 1 on one server, "
        "3 on the 3-node cluster of deploy/ (a node can die without losing a message)",
    )
    command_reply_timeout_s: float = Field(default=5.0, gt=0, alias="GRID_REPLY_TIMEOUT")
    projections: str = Field(
        default="", alias="GRID_PROJECTIONS",
        description="comma-separated read models this process projects (default: all)",
    )
    watcher_interval_s: float = Field(default=5.0, gt=0, alias="GRID_WATCHER_INTERVAL")
    notify_max_age_s: float = Field(
        default=3600.0, gt=0, alias="GRID_NOTIFY_MAX_AGE_S",
        description="the notifier pushes (SSE) and sends webhooks only for events recorded at "
        "most this many seconds ago (event time vs. the runtime's clock); older ones — history "
        "a new or reset notifier catches up on — are written to the notification list only",
    )
    jwt_secret: str = Field(default="change-me-in-production", alias="GRID_JWT_SECRET")
    session_cache_s: float = Field(
        default=2.0, ge=0, le=60, alias="GRID_SESSION_CACHE_S",
        description="seconds a gateway reuses a checked session row (0: check the database on "
        "every request); sign-out and admin changes through the same gateway apply at once, "
        "elsewhere within this time",
    )
    return_visits: str = Field(
        default="hotline,open311,phone", alias="GRID_RETURN_VISITS",
        description="which closed cases are due a return visit (回访): sources, 'phone' (any "
        "case with a reporter phone) or 'all' (aggregates/visits.py)",
    )
    sms_channel: str = Field(
        default="log", alias="GRID_SMS_CHANNEL",
        description="how text messages to reporters go out (gateways/outbound.py): 'log' "
        "(log lines only), 'webhook' (POST to GRID_SMS_WEBHOOK_URL, signed), or "
        "'module:factory' of an adapter",
    )
    sms_webhook_url: str | None = Field(default=None, alias="GRID_SMS_WEBHOOK_URL")
    sms_webhook_secret: str | None = Field(default=None, alias="GRID_SMS_WEBHOOK_SECRET")
    log_json: bool = Field(default=False, alias="GRID_LOG_JSON")
    log_level: str = Field(default="INFO", alias="GRID_LOG_LEVEL")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached: the environment is read once)."""
    return Settings()
