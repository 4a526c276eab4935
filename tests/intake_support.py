"""Helpers of the intake tests (Open311, photos, notifications, browser pages): sign-in with
the demo users, the app on a real port, a tiny webhook receiver, small valid images."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import zlib
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from gateways.http.server import make_server
from tests.conftest import auth_headers, demo_password


async def login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    """Authorization headers for a demo user (the shared helper of tests/conftest.py)."""
    return await auth_headers(client, username)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def live_server(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port inside this event loop."""
    port = free_port()
    server = make_server(app, "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)


class Receiver:
    """A webhook endpoint on 127.0.0.1: records every request; answers ``statuses`` in turn
    (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append(
                    {"headers": dict(self.headers), "body": body, "status": status}
                )
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"status": status}).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A valid PNG image (solid colour)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def jpeg_like(size: int) -> bytes:
    """Bytes that start like a JPEG (what the type check looks at) of a given size."""
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
    return head + b"\x00" * (size - len(head))


# ------------------------------------------------------------------------- browser tests

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 360, "height": 640}
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def chromium_missing() -> str | None:
    """Why browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not installed (apt-get install -y chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright (Python) not installed"
    return None


async def sign_in_page(page: Any, base: str, path: str, username: str) -> None:
    await page.goto(f"{base}{path}")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", demo_password(username))
    await page.click("#signin button[type=submit]")
    await page.wait_for_selector("body[data-ready='1']", timeout=20_000)


async def shot(page: Any, name: str, full_page: bool = False, top: bool = True) -> Path:
    """Save a screenshot to test-artifacts/ (scrolled to the top unless ``top=False``)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if top:
        await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(path), full_page=full_page)
    return path


async def on_site(
    client: httpx.AsyncClient, case_no: str, inspector: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    """On-site evidence for 核查 (verify_pass / verify_fail need it): a photo uploaded by the
    inspector and a fix at the case's point (its grid's centroid when it has none)."""
    photo = await client.post(
        "/v1/photos", content=png(rgb=(len(case_no) * 7 % 255, 90, 60)),
        headers={**inspector, "content-type": "image/png"},
    )
    assert photo.status_code == 201, photo.text
    case = (await client.get(f"/v1/cases/{case_no}", headers=inspector)).json()
    lat, lon = case.get("lat"), case.get("lon")
    if lat is None or lon is None:
        grids = (await client.get("/v1/grids", headers=inspector)).json()["items"]
        grid = next(g for g in grids if g["code"] == case["grid"])
        lat, lon = grid["lat"], grid["lon"]
    ref = {k: photo.json()[k] for k in ("digest", "size", "content_type")}
    return {"photos": [ref], "lat": lat, "lon": lon, **overrides}
