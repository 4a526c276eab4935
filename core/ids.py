"""Identifiers: case ids and case numbers derived from the idempotency key.

Why derived and not drawn from a sequence: the gateway must answer 202 *with the case number*
before the worker has stored anything, and the same Idempotency-Key must give the same number
forever (also after the NATS dedupe window). A name-based UUID (uuid5) of the key is the
aggregate id, so the event store itself refuses a second case for the same key; the case number
is a short, readable rendering of that UUID (60 bits, Crockford base32, checksum-free), which
keeps the chance of two keys sharing a number below one in a billion per year at Beijing's
12345 volume.
"""

from __future__ import annotations

import uuid

#: How long a client's Idempotency-Key may be (header or body field, every endpoint that
#: takes one): long enough not to collide by accident, short enough to index and log.
KEY_MIN_LENGTH = 8
KEY_MAX_LENGTH = 200

_NAMESPACE = uuid.UUID("5b0f2c1e-7a43-5d3c-9f11-12319a0c0de5")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def case_id_for_key(idempotency_key: str) -> uuid.UUID:
    """The aggregate id of the case created by this idempotency key."""
    return uuid.uuid5(_NAMESPACE, f"case:{idempotency_key}")


def case_no_for_id(case_id: uuid.UUID) -> str:
    """A human-friendly case number, e.g. ``GD-7K3Q-M9XA-2BCD``, stable for the id."""
    value = case_id.int >> (128 - 60)
    chars = []
    for _ in range(12):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    body = "".join(reversed(chars))
    return f"GD-{body[0:4]}-{body[4:8]}-{body[8:12]}"


def case_no_for_key(idempotency_key: str) -> str:
    """Shortcut: case number for an idempotency key."""
    return case_no_for_id(case_id_for_key(idempotency_key))


def new_key() -> str:
    """A fresh idempotency key when a client sent none."""
    return uuid.uuid4().hex
