"""Hostile requests from the OpenAPI document (schemathesis): how many, and how many 5xx.

Every operation is called as every role whose scopes it requires (and once without a token),
with data that fits the schema (``positive``) and data that breaks it (``negative``: wrong
types, out-of-range numbers, missing fields, explicit nulls). The promise is zero 5xx: every
hostile request gets a 4xx with a machine-readable body (issue 15). The CI test
(tests/integration/test_schemathesis.py) runs this with a few examples per operation; this
command runs as many as you ask, against a running box::

    gridctl up &                                   # or any gateway with the demo users
    python -m benchmarks.fuzz --url http://127.0.0.1:8319 --examples 100

and prints one JSON line: requests made, 5xx found (with a reproducing curl each), and how
long it took. Run it against a disposable box: it creates, changes and revokes things as an
admin would (never ``/v1/auth/logout``, which would end its own session).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis
import schemathesis.checks
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from benchmarks.common import ROLE_USERS

#: Semantic validation beyond the schema (an unknown category code, a grid outside the city)
#: is a documented 422, so "schema-valid data must be accepted" does not hold by design.
EXCLUDED_CHECKS = [schemathesis.checks.positive_data_acceptance]
#: Never called: ends the session the run uses (checked by the identity tests).
SKIPPED = {("POST", "/v1/auth/logout")}


@dataclass
class FuzzResult:
    """What a run did and found."""

    requests: int = 0
    operations: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)  # one line + curl per 5xx
    nonconforming: list[str] = field(default_factory=list)  # positive data, answer off-schema
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "operations_x_roles": self.operations,
            "server_errors_5xx": len(self.server_errors),
            "nonconforming": len(self.nonconforming),
            "by_status": dict(sorted(self.by_status.items())),
            "seconds": round(self.seconds, 1),
            "first_5xx": self.server_errors[:20],
        }


def streams(schema: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of endless responses (SSE): nothing to check in a bounded time."""
    found = set()
    for path, item in schema["paths"].items():
        for method, op in item.items():
            content = op.get("responses", {}).get("200", {}).get("content", {})
            if "text/event-stream" in content or path.endswith("/stream"):
                found.add((method.upper(), path))
    return found


def fuzz(
    schema: dict[str, Any],
    base_url: str,
    callers: Callable[[str, str], Iterable[tuple[str, dict[str, str]]]],
    max_examples: int,
    modes: Iterable[GenerationMode] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    validate: bool = True,
) -> FuzzResult:
    """Call every operation of ``schema`` at ``base_url`` as each ``(who, headers)`` that
    ``callers(method, path)`` names, ``max_examples`` generated requests per mode.

    A 5xx is recorded and the run goes on (one run finds them all); with ``validate``, an
    answer to schema-valid data that the schema does not document is recorded too (the first
    per operation and caller)."""
    result = FuzzResult()
    started = time.monotonic()
    loaded = schemathesis.openapi.from_dict(schema)
    skip = streams(schema) | SKIPPED
    for found in loaded.get_all_operations():
        operation = found.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        method, path = operation.method.upper(), operation.path
        if (method, path) in skip:
            continue
        for who, headers in callers(method, path):
            result.operations += 1
            for mode in modes:
                check = _checker(operation, base_url, headers, who, mode, max_examples,
                                 result, validate and mode is GenerationMode.POSITIVE)
                try:
                    check()
                except Exception as exc:  # generation impossible for this mode, etc.
                    if "Unsatisfiable" not in type(exc).__name__ and not _no_negative(exc):
                        result.nonconforming.append(f"{method} {path} as {who}: {exc!r}"[:500])
    result.seconds = time.monotonic() - started
    return result


def _no_negative(exc: Exception) -> bool:
    text = str(exc).lower()
    return "negative" in text or "can not generate" in text or "cannot generate" in text


def _checker(operation: Any, base_url: str, headers: dict[str, str], who: str,
             mode: GenerationMode, max_examples: int, result: FuzzResult,
             validate: bool) -> Callable[[], None]:
    method, path = operation.method.upper(), operation.path
    reported: list[bool] = []

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=15)
        result.requests += 1
        status = str(response.status_code)
        result.by_status[status] = result.by_status.get(status, 0) + 1
        if response.status_code >= 500:
            result.server_errors.append(
                f"{response.status_code} {method} {path} as {who} ({mode.value}): "
                f"{response.text[:200]!r}\n  {case.as_curl_command(headers=headers)}"
            )
            return
        if validate and not reported:
            try:
                case.validate_response(response, headers=headers,
                                       excluded_checks=EXCLUDED_CHECKS)
            except Exception as exc:  # the first per operation and caller is enough
                reported.append(True)
                result.nonconforming.append(f"{method} {path} as {who}:\n{str(exc)[:1500]}")

    return check


def required_scopes(schema: dict[str, Any], method: str, path: str) -> list[str] | None:
    """The OAuth2 scopes an operation requires; ``None`` when it is public."""
    op = schema["paths"][path][method.lower()]
    security = op.get("security")
    if not security:
        return None
    for entry in security:
        if "OAuth2" in entry:
            return list(entry["OAuth2"])
    return []


def _sign_in(base_url: str, username: str) -> dict[str, str]:
    response = httpx.post(
        f"{base_url}/v1/auth/token",
        data={"username": username, "password": f"{username}-demo"},
        timeout=30,
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8319", help="a running gateway")
    parser.add_argument("--examples", type=int, default=100,
                        help="generated requests per operation, role and mode")
    parser.add_argument("--no-validate", action="store_true",
                        help="count 5xx only (skip the schema-conformance checks)")
    args = parser.parse_args(argv)
    from core.users import ROLE_SCOPES

    base = args.url.rstrip("/")
    schema = httpx.get(f"{base}/openapi.json", timeout=30).json()
    tokens = {role: _sign_in(base, user) for role, user in ROLE_USERS.items()}

    def callers(method: str, path: str) -> list[tuple[str, dict[str, str]]]:
        scopes = required_scopes(schema, method, path)
        if scopes is None:
            return [("anonymous", {})]
        admitted = [(r, tokens[r]) for r in ROLE_USERS if set(scopes) <= ROLE_SCOPES[r]]
        return [*admitted, ("anonymous", {})]

    result = fuzz(schema, base, callers, args.examples, validate=not args.no_validate)
    print(json.dumps(result.summary(), ensure_ascii=False))
    return 1 if result.server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
