"""Password hashing: argon2id through argon2-cffi (RFC 9106's low-memory profile).

Why argon2id: memory-hard, the current OWASP first choice; argon2-cffi is maintained and
encodes the parameters in each hash, so raising the cost later re-hashes users on their next
sign-in (:func:`needs_rehash`) without a migration.

Hashing costs ~0.1–0.5 s of CPU on purpose: call these from a thread (``asyncio.to_thread``)
in async code. The demo users ship pre-computed hashes so start-up stays fast.
"""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
MAX_LENGTH = 128

_hasher = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4 (RFC 9106 second recommendation)


class WeakPassword(ValueError):
    """The password breaks the policy; the message says which rule."""


def check_policy(password: str) -> None:
    """Raise :class:`WeakPassword` unless 8–128 characters and not all one character.

    Length is what matters (NIST SP 800-63B): no composition rules, no forced rotation."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"password must have at most {MAX_LENGTH} characters")
    if len(set(password)) < 3:
        raise WeakPassword("password must use at least 3 different characters")


def hash_password(password: str) -> str:
    """The encoded argon2id hash (salt and parameters included)."""
    return _hasher.hash(password)


def verify_password(encoded: str | None, password: str) -> bool:
    """True when ``password`` matches ``encoded``; False for a mismatch or a broken hash.

    ``encoded=None`` (unknown user, or a user without a password) still spends the time of a
    real verification, so response times do not tell which usernames exist."""
    if encoded is None:
        encoded = _dummy_hash()
        password = password + "\x00never"
    try:
        return bool(_hasher.verify(encoded, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(encoded: str) -> bool:
    """True when ``encoded`` was made with weaker parameters than the current ones."""
    try:
        return bool(_hasher.check_needs_rehash(encoded))
    except InvalidHashError:
        return True


def is_hash(value: str) -> bool:
    """True for an encoded argon2 hash (so config files can carry hashes, never passwords)."""
    return value.startswith("$argon2")


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash("griddispatch-timing-equaliser")
