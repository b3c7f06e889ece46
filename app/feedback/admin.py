"""The bearer token of the feedback's export and summary (ADMIN_TOKEN), compared in
constant time: the sha256 digests of the two are compared with `hmac.compare_digest`, so
the comparison takes the same time whatever the token's length or first characters."""

import hashlib
import hmac


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def token_matches(given: str | None, expected: str) -> bool:
    """Whether `given` is the token; False for none (and no token is set: off)."""
    if given is None or not expected:
        return False
    return hmac.compare_digest(digest(given), digest(expected))
