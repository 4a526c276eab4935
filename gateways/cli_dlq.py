"""``gridctl dlq``: inspect and replay dead letters (the ``<PREFIX>_DLQ`` stream).

A consumer that cannot process a message (malformed, an unknown verb, or failing
``GRID_MAX_DELIVER`` times) moves it to the DLQ with the reason and the original subject in
headers (``Grid-DLQ-Reason``, ``Grid-DLQ-Subject``) and carries on with the next one.

    gridctl dlq list [--limit 50]            # seq, time, subject, reason
    gridctl dlq show SEQ                     # headers and payload
    gridctl dlq replay SEQ [SEQ ...]         # republish to the original subject, then delete
    gridctl dlq replay --all
    gridctl dlq replay SEQ --payload fixed.json   # replay a corrected payload
    gridctl dlq drop SEQ [SEQ ...]           # delete without replaying

Replaying is safe to repeat: commands are idempotent (a report's case id comes from its
idempotency key; a lifecycle command id is applied once), and the republish carries
``Nats-Msg-Id: dlq-replay:<stream>:<seq>`` so JetStream drops a second copy within its dedupe
window. Uses ``NATS_URL`` and ``GRID_STREAM_PREFIX`` (or the embedded NATS of ``gridctl up``
on 127.0.0.1:``GRID_NATS_PORT``, 4333, when ``NATS_URL`` is unset).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import nats
import orjson
import typer
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from rich.console import Console
from rich.table import Table

from core.messaging import Topology, server_list
from core.settings import Settings
from gateways.cli_help import ZhGroup

app = typer.Typer(cls=ZhGroup, help="死信队列: 列出、查看、重放、删除。", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

REASON = "Grid-DLQ-Reason"
SUBJECT = "Grid-DLQ-Subject"
DELIVERIES = "Grid-DLQ-Deliveries"
DLQ_HEADERS = (REASON, SUBJECT, DELIVERIES)


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    time: datetime | None
    subject: str
    reason: str
    deliveries: str
    dlq_subject: str
    headers: dict[str, str]
    data: bytes


def _letter(msg: Any) -> DeadLetter:
    headers = dict(msg.headers or {})
    return DeadLetter(
        seq=int(msg.seq),
        time=getattr(msg, "time", None),
        subject=headers.get(SUBJECT, ""),
        reason=headers.get(REASON, ""),
        deliveries=headers.get(DELIVERIES, ""),
        dlq_subject=msg.subject,
        headers=headers,
        data=msg.data or b"",
    )


async def list_dead_letters(
    js: JetStreamContext, topo: Topology, limit: int = 50, start: int | None = None
) -> list[DeadLetter]:
    """Dead letters oldest first, at most ``limit``, from stream sequence ``start`` on."""
    info = await js.stream_info(topo.dlq_stream)
    first, last = int(info.state.first_seq), int(info.state.last_seq)
    letters: list[DeadLetter] = []
    if not info.state.messages:
        return letters
    seq = max(first, start or first)
    while seq <= last and len(letters) < limit:
        try:
            msg = await js.get_msg(topo.dlq_stream, seq)
        except NotFoundError:
            seq += 1
            continue
        letters.append(_letter(msg))
        seq += 1
    return letters


async def get_dead_letter(js: JetStreamContext, topo: Topology, seq: int) -> DeadLetter | None:
    try:
        return _letter(await js.get_msg(topo.dlq_stream, seq))
    except NotFoundError:
        return None


async def replay(
    js: JetStreamContext,
    topo: Topology,
    seq: int,
    payload: bytes | None = None,
    keep: bool = False,
) -> DeadLetter:
    """Republish dead letter ``seq`` (or ``payload`` in its place) to its original subject,
    wait for JetStream's acknowledgement, then delete it from the DLQ (unless ``keep``)."""
    letter = await get_dead_letter(js, topo, seq)
    if letter is None:
        raise LookupError(f"没有序号为 {seq} 的死信 ({topo.dlq_stream})")
    root = topo.subject_root + "."
    if not letter.subject.startswith(root) or ".dlq." in letter.subject:
        raise ValueError(f"死信 {seq} 没有可重放的原主题 ({letter.subject!r})")
    headers = {k: v for k, v in letter.headers.items() if k not in DLQ_HEADERS}
    headers["Nats-Msg-Id"] = f"dlq-replay:{topo.dlq_stream}:{seq}"
    headers["Grid-Replayed-From"] = str(seq)
    await js.publish(
        letter.subject, payload if payload is not None else letter.data, headers=headers
    )
    if not keep:
        await js.delete_msg(topo.dlq_stream, seq)
    return letter


async def drop(js: JetStreamContext, topo: Topology, seq: int) -> bool:
    try:
        return bool(await js.delete_msg(topo.dlq_stream, seq))
    except NotFoundError:
        return False


# --------------------------------------------------------------------------- CLI


def _nats_url(settings: Settings) -> str:
    if settings.nats_url:
        return settings.nats_url
    return f"nats://127.0.0.1:{os.environ.get('GRID_NATS_PORT', '4333')}"


def _run(work: Callable[[JetStreamContext, Topology], Awaitable[T]]) -> T:
    settings = Settings()
    topo = Topology(settings.stream_prefix)

    async def main() -> T:
        try:
            # A CLI fails fast instead of reconnecting forever; the URL may list the cluster.
            nc = await nats.connect(
                server_list(_nats_url(settings)), name="gridctl-dlq", connect_timeout=3,
                max_reconnect_attempts=1,
            )
        except Exception as exc:
            err.print(f"[red]无法连接 NATS[/] {_nats_url(settings)}: {exc}")
            raise typer.Exit(2) from exc
        try:
            js = nc.jetstream(timeout=10)
            try:
                await js.stream_info(topo.dlq_stream)
            except NotFoundError as exc:
                err.print(f"[red]没有流 {topo.dlq_stream}[/] (检查 GRID_STREAM_PREFIX)")
                raise typer.Exit(2) from exc
            return await work(js, topo)
        finally:
            await nc.close()

    return asyncio.run(main())


def _preview(data: bytes, width: int = 60) -> str:
    text = data.decode("utf-8", "replace").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("list")
def list_cmd(
    limit: Annotated[int, typer.Option(help="最多列出条数")] = 50,
    start: Annotated[int | None, typer.Option(help="从此流序号开始")] = None,
) -> None:
    """列出死信 (最早的在前): 序号、时间、原主题、原因。"""

    async def work(js: JetStreamContext, topo: Topology) -> list[DeadLetter]:
        return await list_dead_letters(js, topo, limit, start)

    letters = _run(work)
    table = Table(title=f"{len(letters)} 条死信")
    for column in ("序号", "时间", "主题", "原因", "投递次数", "内容"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            str(letter.seq),
            letter.time.isoformat(timespec="seconds") if letter.time else "",
            letter.subject,
            letter.reason,
            letter.deliveries,
            _preview(letter.data),
        )
    out.print(table)


@app.command()
def show(seq: Annotated[int, typer.Argument(help="流序号")]) -> None:
    """查看一条死信: 消息头和内容 (JSON 格式化显示)。"""

    async def work(js: JetStreamContext, topo: Topology) -> DeadLetter | None:
        return await get_dead_letter(js, topo, seq)

    letter = _run(work)
    if letter is None:
        err.print(f"[red]没有序号为 {seq} 的死信[/]")
        raise typer.Exit(1)
    for key, value in sorted(letter.headers.items()):
        out.print(f"[bold]{key}[/]: {value}")
    try:
        out.print_json(orjson.dumps(orjson.loads(letter.data)).decode())
    except orjson.JSONDecodeError:
        out.print(repr(letter.data))


@app.command("replay")
def replay_cmd(
    seqs: Annotated[list[int] | None, typer.Argument(help="流序号")] = None,
    all_: Annotated[bool, typer.Option("--all", help="全部死信")] = False,
    payload: Annotated[
        Path | None, typer.Option(help="改用此 (修正后的) 内容重放; 仅限一个 SEQ")
    ] = None,
    keep: Annotated[bool, typer.Option(help="重放后保留死信")] = False,
) -> None:
    """把死信重新发布到原主题, 然后从死信队列删除。"""
    if not seqs and not all_:
        err.print("[red]请给出 SEQ … 或 --all[/]")
        raise typer.Exit(2)
    if payload is not None and (all_ or len(seqs or []) != 1):
        err.print("[red]--payload 只能替换恰好一个 SEQ 的内容[/]")
        raise typer.Exit(2)
    body = payload.read_bytes() if payload is not None else None

    async def work(js: JetStreamContext, topo: Topology) -> list[tuple[int, str]]:
        targets = list(seqs or [])
        if all_:
            targets = [d.seq for d in await list_dead_letters(js, topo, limit=1_000_000)]
        done: list[tuple[int, str]] = []
        for seq in targets:
            try:
                letter = await replay(js, topo, seq, body, keep)
                done.append((seq, f"→ {letter.subject}"))
            except (LookupError, ValueError) as exc:
                done.append((seq, f"[red]{exc}[/]"))
        return done

    results = _run(work)
    for seq, what in results:
        out.print(f"{seq} {what}")
    out.print(f"已重放 {sum(1 for _, w in results if w.startswith('→'))} / {len(results)} 条")
    if any(not w.startswith("→") for _, w in results):
        raise typer.Exit(1)


@app.command("drop")
def drop_cmd(seqs: Annotated[list[int], typer.Argument(help="流序号")]) -> None:
    """删除死信, 不重放。"""

    async def work(js: JetStreamContext, topo: Topology) -> int:
        return sum([await drop(js, topo, seq) for seq in seqs])

    out.print(f"已删除 {_run(work)} / {len(seqs)} 条")
