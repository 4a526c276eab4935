"""Access tokens: verified once, then served from the verified-token cache — which must
still refuse an expired token, a token signed with another secret, and a refresh token."""

from __future__ import annotations

import time

import jwt
import pytest

from core.users import (
    TOKEN_LEEWAY_S,
    TokenError,
    UserRecord,
    decode_access_token,
    issue_access_token,
)

USER = UserRecord(user_id="u-1", username="dispatcher", name="調度員", role="dispatcher")


def test_same_token_twice_gives_the_same_claims_and_callers_cannot_alter_the_cache() -> None:
    token = issue_access_token("s3cret", USER, "sid-1", ["cases:read"], ttl_s=600)
    first = decode_access_token("s3cret", token)
    first["role"] = "admin"  # a caller mutating its copy
    second = decode_access_token("s3cret", token)
    assert second["sub"] == "u-1" and second["sid"] == "sid-1"
    assert second["role"] == "dispatcher"


def test_a_cached_token_still_expires() -> None:
    token = issue_access_token("s3cret", USER, "sid-2", [], ttl_s=60)
    claims = decode_access_token("s3cret", token)
    later = claims["exp"] + TOKEN_LEEWAY_S + 1
    with pytest.raises(TokenError) as err:
        decode_access_token("s3cret", token, now=later)
    assert err.value.code == "token_expired"
    # ...and it left the cache: the next use goes through the full check again (which
    # accepts it, as for the real clock it is still valid).
    assert decode_access_token("s3cret", token, now=time.time())["sid"] == "sid-2"


def test_the_cache_is_per_secret_and_only_for_access_tokens() -> None:
    token = issue_access_token("s3cret", USER, "sid-3", [], ttl_s=600)
    decode_access_token("s3cret", token)
    with pytest.raises(TokenError) as err:
        decode_access_token("another-secret", token)
    assert err.value.code == "invalid_token"
    forged = jwt.encode({"sub": "u-1", "sid": "x", "typ": "refresh"}, "k" * 64, algorithm="HS256")
    for _ in range(2):
        with pytest.raises(TokenError):
            decode_access_token("s3cret", forged)
