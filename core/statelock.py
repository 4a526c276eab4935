"""One box per state directory: ``<state_dir>/gridctl.lock``, held with an OS lock.

Why an OS lock and not just a PID file: ``flock`` is released by the kernel when its holder
dies, however it dies (SIGKILL, power loss of a container), so a stale file never blocks a
start and needs no guessing whether its PID was reused. The file's *content* is only for
people: who holds it (pid, since when) and where that box answers (URLs), so a second
``gridctl up`` — which would otherwise start a second nats-server on the live JetStream store
— can say at once what is running instead of touching anything.

The descriptor is not inherited by child processes (Python opens files non-inheritable and
``subprocess`` closes the rest), so the lock lives exactly as long as the ``gridctl up``
process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

LOCK_NAME = "gridctl.lock"


class StateDirInUse(RuntimeError):
    """Another live process holds the state directory; ``holder`` is what it wrote."""

    def __init__(self, state_dir: Path, holder: dict[str, Any]) -> None:
        self.state_dir = state_dir
        self.holder = holder
        pid = holder.get("pid", "?")
        super().__init__(f"{state_dir} 正被 gridctl up 使用 (pid {pid})")

    def describe(self) -> str:
        """What a person needs: who, since when, and where it answers."""
        lines = [str(self)]
        since = self.holder.get("started_at")
        if since:
            lines[0] += f", 始于 {since}"
        for key, label in (("command_centre", "指挥中心"), ("nats_url", "NATS"),
                           ("database_url", "数据库")):
            if self.holder.get(key):
                lines.append(f"  {label}: {self.holder[key]}")
        return "\n".join(lines)


class StateLock:
    """The lock of one state directory, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_NAME
        self._fd: int | None = None
        self.info: dict[str, Any] = {}
        #: What a previous holder wrote when it died without releasing (a stale pid).
        self.previous: dict[str, Any] | None = None

    def acquire(self, **info: Any) -> None:
        """Take the lock or raise :class:`StateDirInUse` without changing anything.

        The file is opened without truncation and written only once the lock is ours, so a
        refused start leaves the holder's description intact."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _parse(_read(fd))
            os.close(fd)
            raise StateDirInUse(self.state_dir, holder) from None
        self._fd = fd
        previous = _parse(_read(fd))
        self.previous = previous if previous.get("pid") else None
        self.info = {
            "pid": os.getpid(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "state_dir": str(self.state_dir),
            **info,
        }
        self._write()

    def update(self, **info: Any) -> None:
        """Add what became known after the start (the servers' URLs, the gateway's)."""
        self.info.update(info)
        self._write()

    def release(self) -> None:
        """Empty the file and drop the lock (a clean stop leaves no pid behind)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None

    def _write(self) -> None:
        assert self._fd is not None
        data = json.dumps(self.info, ensure_ascii=False, indent=1).encode() + b"\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    @staticmethod
    def holder(state_dir: Path) -> dict[str, Any] | None:
        """Who holds the state directory now, or ``None`` when nobody does."""
        path = Path(state_dir) / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(_read(fd))
        finally:
            os.close(fd)
        return None


def _read(fd: int) -> bytes:
    return os.pread(fd, 64 * 1024, 0)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
