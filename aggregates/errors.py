"""Domain errors with machine-readable bodies.

Why a small hierarchy instead of ValueError: the HTTP layer, the NATS workers and the CLI all
have to tell a caller *why* a command was refused in a way a program can act on (show the
allowed buttons, ask for a reason, log in with another role). Each error therefore carries a
stable `code` and a `to_dict()` body, plus the HTTP status the gateway should answer with
(`code` / `http_status` are plain class attributes so a service-level subclass may override
them per instance, e.g. a "not_found" refusal):

* `IllegalTransition` 状态不允许 → 409 Conflict (the case is not in a state for this action),
* `NotPermitted` 无权限 → 403 Forbidden (the role may never do this action),
* `InvalidCommand` 命令无效 → 422 Unprocessable Entity (missing reason, limit reached, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.vocabulary import STATUS_LABELS, Status


def _text(value: Any) -> str:
    """Plain string of an Enum member or a str, so bodies never contain Enum reprs."""
    return str(value.value) if isinstance(value, Status) else str(value)


class DomainError(Exception):
    """Base of all refusals raised by the aggregates (no I/O, safe to show to the caller)."""

    code: str = "domain_error"
    http_status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """JSON body for the API: at least `error` (the code) and a human `message`."""
        return {"error": self.code, "message": self.message}


class IllegalTransition(DomainError):
    """The action is not allowed in the case's current status (for this role)."""

    code: str = "illegal_transition"
    http_status: int = 409

    def __init__(
        self, action: str, status: Status | str, allowed: Iterable[str], why: str | None = None
    ) -> None:
        self.action = _text(action)
        self.status = _text(status)
        self.allowed = [_text(a) for a in allowed]
        self.why = why
        try:
            self.status_zh = STATUS_LABELS[Status(self.status)]
        except ValueError:
            self.status_zh = ""
        super().__init__(
            f"action '{self.action}' is not allowed when the case is "
            f"'{self.status}' ({self.status_zh})" + (f": {why}" if why else "")
            + f"; allowed: {', '.join(self.allowed) or 'none'}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Body naming the status (with zh label) and the actions that *are* allowed."""
        return {
            "error": self.code,
            "message": self.message,
            "action": self.action,
            "status": self.status,
            "status_zh": self.status_zh,
            "why": self.why,
            "allowed_actions": list(self.allowed),
        }


class NotPermitted(DomainError):
    """The role may never perform this action, whatever the case's status (无权限)."""

    code: str = "not_permitted"
    http_status: int = 403

    def __init__(self, action: str, role: str | None) -> None:
        self.action = _text(action)
        self.role = role
        super().__init__(f"role '{role}' may not perform '{self.action}'")

    def to_dict(self) -> dict[str, Any]:
        """Body naming the action and the role that was refused."""
        return {
            "error": self.code,
            "message": self.message,
            "action": self.action,
            "role": self.role,
        }


class InvalidCommand(DomainError):
    """The action is allowed but its arguments are not acceptable (命令无效), e.g. a missing
    reason, an extension beyond the limit, escalating past the top level."""

    code: str = "invalid_command"
    http_status: int = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        """Body naming the offending field (None when the problem is not one field)."""
        return {"error": self.code, "message": self.message, "field": self.field}
