"""Personal data (个人信息) in case payloads: the one place that masks it.

A case file carries the reporting citizen's name and phone number. They are shown in full
only to the people who need them to do their job (DOMAIN.md):

* call-takers (受理员) — they registered the call and do the return visit (回访);
* the owning dispatcher (派遣员) — a dispatcher whose node contains the case;
* auditors (审计员) — they see everything, and every read is logged;
* ``system`` (in-process callers).

Everyone else gets masked values: ``张三`` → ``张*``, ``13800000000`` → ``138****0000``.

:func:`mask_case` walks a whole payload (the case row, its timeline, event data, nested
``reporter`` dicts and lists) so new fields under those names are covered too. Every router
that returns case data calls it (or :func:`mask_cases`) on what it is about to return —
list rows, a case file, stream events, exports — with the caller's principal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from core.jurisdiction import Jurisdiction
from gateways.http.access import can_see, within_node
from gateways.http.identity import Principal

#: Keys whose value is a person's name or phone, wherever they occur in a payload.
NAME_KEYS = frozenset({"reporter_name", "citizen_name", "contact_name"})
PHONE_KEYS = frozenset({"reporter_phone", "citizen_phone", "contact_phone"})
#: Keys holding a person record (dict) or a list of them; their name / phone are masked.
PERSON_KEYS = frozenset({"reporter", "reporters", "citizen", "contact", "linked_reporters"})
PERSON_NAME_FIELDS = frozenset({"name", "full_name"})
PERSON_PHONE_FIELDS = frozenset({"phone", "mobile", "tel", "email"})

_NON_DIGIT = re.compile(r"\D")


def mask_name(name: str | None) -> str | None:
    """``张三`` → ``张*``; ``欧阳娜娜`` → ``欧***``; ``Li Lei`` → ``L*****``."""
    if not name:
        return name
    name = str(name)
    return name[0] + "*" * max(1, len(name) - 1)


def mask_phone(phone: str | None) -> str | None:
    """``13800000000`` → ``138****0000``; short numbers keep only their last two digits."""
    if not phone:
        return phone
    phone = str(phone)
    if "@" in phone:  # an e-mail address in a contact field
        local, _, domain = phone.partition("@")
        return (local[:1] + "***@" + domain) if local else "***@" + domain
    digits = _NON_DIGIT.sub("", phone)
    if len(digits) >= 7:
        return digits[:3] + "****" + digits[-4:]
    if len(digits) >= 3:
        return "*" * (len(digits) - 2) + digits[-2:]
    return "*" * max(1, len(digits))


def may_see_personal_data(principal: Principal, case: Mapping[str, Any], j: Jurisdiction) -> bool:
    """True for call-takers who may see the case, the owning dispatcher (case within their
    node), auditors and system."""
    if principal.role in ("auditor", "system"):
        return True
    if principal.role == "call_taker":
        return can_see(principal, case, j)
    if principal.role == "dispatcher":
        return within_node(principal.node, case, j)
    return False


def _mask_person(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if key in PERSON_NAME_FIELDS and isinstance(item, str):
                out[key] = mask_name(item)
            elif key in PERSON_PHONE_FIELDS and isinstance(item, str):
                out[key] = mask_phone(item)
            else:
                out[key] = _mask(item)
        return out
    if isinstance(value, list):
        return [_mask_person(v) for v in value]
    return value


def _mask(value: Any) -> Any:
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if key in NAME_KEYS and isinstance(item, str):
                out[key] = mask_name(item)
            elif key in PHONE_KEYS and isinstance(item, str):
                out[key] = mask_phone(item)
            elif key in PERSON_KEYS:
                out[key] = _mask_person(item)
            else:
                out[key] = _mask(item)
        return out
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def mask_personal_data(payload: Any) -> Any:
    """A copy of ``payload`` with every name / phone under the known keys masked."""
    return _mask(payload)


def mask_case(principal: Principal, case: Mapping[str, Any], j: Jurisdiction) -> dict[str, Any]:
    """The case payload as ``principal`` may see it (unchanged, or masked throughout)."""
    if may_see_personal_data(principal, case, j):
        return dict(case)
    masked: dict[str, Any] = _mask(case)
    return masked


def mask_cases(
    principal: Principal, cases: Iterable[Mapping[str, Any]], j: Jurisdiction
) -> list[dict[str, Any]]:
    return [mask_case(principal, c, j) for c in cases]
