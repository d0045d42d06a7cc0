"""Page tokens for ListQueries: a signed, expiring cursor bound to the filters it was made for.

A token is ``base64url(payload || HMAC-SHA256(secret, payload))`` where the payload holds the
cursor (the last listed query's ``created_at`` and ``query_id``: listing is keyset-paged, so
queries submitted meanwhile never shift a later page), the SHA-256 of the filters, and an
expiry time. The secret is drawn fresh when the service starts, so a restart expires every
token; a token is only ever a position in a list the caller could read anyway, so that is
the only cost.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from psi_core.errors import InvalidInputError, PreconditionError

__all__ = ["Cursor", "PageTokens"]

DEFAULT_TTL_SECONDS = 600.0
_MAC_BYTES = 32
_MAX_TOKEN_CHARS = 1024


@dataclass(frozen=True)
class Cursor:
    """The last query of a page: the next page starts strictly after it (older)."""

    created_at: str
    query_id: str


def filter_digest(*filters: str) -> str:
    return hashlib.sha256(json.dumps(list(filters)).encode("utf-8")).hexdigest()


class PageTokens:
    """Issues and opens page tokens (see the module doc)."""

    def __init__(
        self,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
    ) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._ttl = ttl_seconds
        self._clock = clock

    def issue(self, cursor: Cursor, filters: tuple[str, ...]) -> str:
        payload = json.dumps(
            {
                "c": cursor.created_at,
                "q": cursor.query_id,
                "f": filter_digest(*filters),
                "e": self._clock() + self._ttl,
            },
            separators=(",", ":"),
        ).encode("utf-8")
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(payload + mac).decode("ascii")

    def open(self, token: str, filters: tuple[str, ...]) -> Cursor:
        """The cursor in ``token``; InvalidInputError if this service did not make it for
        these filters, PreconditionError if it has expired."""
        if len(token) > _MAX_TOKEN_CHARS:
            raise InvalidInputError("the page token is not one this service issued")
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise InvalidInputError("the page token is not one this service issued") from None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        expected = hmac.new(self._secret, payload, hashlib.sha256).digest()
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, expected):
            raise InvalidInputError(
                "the page token is not one this service issued (or the service has restarted "
                "since); list again from the start"
            )
        fields = json.loads(payload)
        if fields["f"] != filter_digest(*filters):
            raise InvalidInputError("the page token was issued for other filters")
        if self._clock() > fields["e"]:
            raise PreconditionError("the page token has expired; list again from the start")
        return Cursor(created_at=fields["c"], query_id=fields["q"])
