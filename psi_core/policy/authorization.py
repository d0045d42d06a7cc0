"""Legal authorizations: Ed25519 authority keys, signed claims, and their verification.

An *authority* (a court clerk, a supervising official) holds an Ed25519 key made by
:func:`init_authority` and signs :class:`AuthorizationClaims` with
:func:`issue_authorization`. A token travels as a serialized ``psi.v1.SignedAuthorization``:
the claims bytes and a signature over ``b"psi.v1.AuthorizationClaims\\x00" + claims``
(the prefix keeps the key from ever signing anything that could be read as another
message). The custodian trusts a set of authority public keys
(:class:`TrustedAuthorities`) and calls :func:`verify_authorization` on every request
before any curve work. Budgets (``max_queries``, ``max_subjects``) are enforced by
:class:`psi_core.policy.ledger.AuthorizationLedger`, not here.

What :func:`verify_authorization` raises, in the order it checks:

=====================================================  ========================  ===========
check                                                  error                     status
=====================================================  ========================  ===========
token larger than ``max_token_bytes`` (or empty)       AuthenticationError       UNAUTHENTICATED
token or claims do not parse                           AuthenticationError       UNAUTHENTICATED
issuer not trusted                                     AuthenticationError       UNAUTHENTICATED
signature does not verify                              AuthenticationError       UNAUTHENTICATED
addressed to another custodian                         PermissionDeniedError     PERMISSION_DENIED
issued to another agency than the caller's certificate PermissionDeniedError     PERMISSION_DENIED
not yet valid (beyond the clock skew)                  AuthenticationError       UNAUTHENTICATED
expired (beyond the clock skew)                        AuthenticationError       UNAUTHENTICATED
claims unusable (zero budget, empty id, bad window)    AuthenticationError       UNAUTHENTICATED
=====================================================  ========================  ===========

A token outside its validity window is a credential that does not currently prove
anything, so it is UNAUTHENTICATED (as an expired bearer token is in HTTP), not
FAILED_PRECONDITION. Arguments that the caller controls (a naive ``now``, a negative
skew) raise :class:`InvalidInputError`. No message contains token bytes; ids taken from
an unverified token are shown truncated and escaped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError

from psi_core.errors import (
    AuthenticationError,
    InvalidInputError,
    PermissionDeniedError,
    PreconditionError,
    shown,
)
from psi_core.io.atomic import utc_timestamp
from psi_core.policy.identity import validate_party_id
from psi_proto.v1 import authorization_pb2

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_MAX_TOKEN_BYTES",
    "SIGNATURE_DOMAIN",
    "AuthorityPaths",
    "AuthorizationClaims",
    "TrustedAuthorities",
    "key_id",
    "verify_authorization",
]

SIGNATURE_DOMAIN = b"psi.v1.AuthorizationClaims\x00"
DEFAULT_MAX_TOKEN_BYTES = 4096
DEFAULT_CLOCK_SKEW = dt.timedelta(seconds=60)

_PRIVATE_KEY = "authority.key"
_PUBLIC_KEY = "authority.pub"
_METADATA = "authority.json"
#: The range of every time in the claims, in Unix seconds: 1970 to the end of 9999.
MIN_CLAIM_TIME = 0
MAX_CLAIM_TIME = 253402300799


@dataclass(frozen=True)
class AuthorityPaths:
    """Files of one authority directory made by :func:`init_authority`.

    ``private_key`` stays with the authority; ``public_key`` and ``metadata`` are what a
    custodian needs to trust it.
    """

    root: Path
    private_key: Path
    public_key: Path
    metadata: Path

    @classmethod
    def in_dir(cls, root: str | os.PathLike[str]) -> AuthorityPaths:
        """The standard layout under ``root`` (nothing is read or written)."""
        r = Path(root)
        return cls(r, r / _PRIVATE_KEY, r / _PUBLIC_KEY, r / _METADATA)


@dataclass(frozen=True)
class AuthorizationClaims:
    """Claims of a token that :func:`verify_authorization` accepted.

    A frozen copy of ``psi.v1.AuthorizationClaims`` with the times as timezone-aware UTC
    datetimes; holding one means the signature, audience, agency, window and limits were
    all checked. The budget has not been charged.
    """

    token_id: str
    issuer: str
    agency_id: str
    custodian_id: str
    case_id: str
    legal_basis: str
    max_subjects: int
    max_queries: int
    not_before: dt.datetime
    expires_at: dt.datetime
    issued_at: dt.datetime


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def read_authority_metadata(path: Path) -> tuple[str, str]:
    """The issuer and key id an authority directory's metadata names (checked)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PreconditionError(
            f"authority metadata {path} is missing; an authority directory holds "
            f"{_PUBLIC_KEY} and {_METADATA} (made by `psi authority init`)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreconditionError(f"authority metadata {path} cannot be read as JSON") from exc
    if not isinstance(data, dict):
        raise PreconditionError(f"authority metadata {path} is not a JSON object")
    issuer, kid = data.get("issuer"), data.get("key_id")
    try:
        validate_party_id("issuer", issuer)
    except InvalidInputError as exc:
        raise PreconditionError(f"authority metadata {path}: {exc}") from None
    if not isinstance(kid, str) or re.fullmatch(r"[0-9a-f]{16}", kid) is None:
        raise PreconditionError(f"authority metadata {path}: key_id must be 16 hex digits")
    return issuer, kid


class TrustedAuthorities:
    """The authority public keys a custodian accepts, by issuer id.

    An issuer may have several keys (a key being rotated out and its successor); a token
    verifies if any of them accepts its signature.
    """

    def __init__(self, keys: Mapping[str, Ed25519PublicKey | Iterable[Ed25519PublicKey]]) -> None:
        """Trust ``keys`` (issuer id -> one key or several). Raises :class:`InvalidInputError`
        for a bad issuer id or a key that is not Ed25519."""
        self._keys: dict[str, tuple[Ed25519PublicKey, ...]] = {}
        for issuer, value in keys.items():
            validate_party_id("issuer id", issuer)
            group = (value,) if isinstance(value, Ed25519PublicKey) else tuple(value)
            if not group or not all(isinstance(k, Ed25519PublicKey) for k in group):
                raise InvalidInputError(f"issuer {issuer} needs one or more Ed25519 public keys")
            self._keys[issuer] = group

    @classmethod
    def load(cls, paths: Iterable[str | os.PathLike[str]]) -> TrustedAuthorities:
        """Load authorities from ``paths``.

        Each path is an ``authority.pub`` file (with ``authority.json`` beside it), a
        directory holding those two files, or a directory of such directories.

        Raises :class:`PreconditionError` naming the file when a path holds no authority,
        a file is missing or unreadable, a key id does not match its key, or no authority
        at all was found.
        """
        found: dict[str, dict[str, Ed25519PublicKey]] = {}
        for raw in paths:
            path = Path(raw)
            if path.is_file():
                dirs = [path.parent]
            elif (path / _PUBLIC_KEY).is_file():
                dirs = [path]
            elif path.is_dir():
                dirs = sorted(p for p in path.iterdir() if (p / _PUBLIC_KEY).is_file())
                if not dirs:
                    raise PreconditionError(
                        f"{path} holds no authority: expected {_PUBLIC_KEY} and {_METADATA} "
                        "in it or in its subdirectories"
                    )
            else:
                raise PreconditionError(f"trusted authority path {path} does not exist")
            for directory in dirs:
                issuer, public = _load_public_authority(directory)
                found.setdefault(issuer, {})[key_id(public)] = public
        if not found:
            raise PreconditionError("no trusted authority was given; a custodian needs one")
        return cls({issuer: tuple(keys.values()) for issuer, keys in found.items()})

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str]) -> TrustedAuthorities:
        """Same as ``load([directory])``."""
        return cls.load([directory])

    @property
    def issuers(self) -> frozenset[str]:
        """The trusted issuer ids."""
        return frozenset(self._keys)

    def keys_for(self, issuer: str) -> tuple[Ed25519PublicKey, ...]:
        """The keys trusted for ``issuer``; empty if it is not trusted."""
        return self._keys.get(issuer, ())

    def __contains__(self, issuer: object) -> bool:
        return issuer in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"TrustedAuthorities({sorted(self._keys)!r})"


def _load_public_authority(directory: Path) -> tuple[str, Ed25519PublicKey]:
    issuer, expected_key_id = read_authority_metadata(directory / _METADATA)
    pub_path = directory / _PUBLIC_KEY
    try:
        public = serialization.load_pem_public_key(pub_path.read_bytes())
    except FileNotFoundError:
        raise PreconditionError(f"authority public key {pub_path} is missing") from None
    except (OSError, ValueError, UnsupportedAlgorithm):
        raise PreconditionError(f"{pub_path} is not a PEM public key") from None
    if not isinstance(public, Ed25519PublicKey):
        raise PreconditionError(f"{pub_path} is not an Ed25519 public key")
    if key_id(public) != expected_key_id:
        raise PreconditionError(
            f"{pub_path} does not match the key id in {directory / _METADATA}; "
            "the directory mixes files from two authorities"
        )
    return issuer, public


@dataclass(frozen=True)
class ClaimedIdentity:
    """What a token *says* about itself, read without checking anything.

    For audit entries of refused requests (which token was presented, for which case) and
    for the agency's own bookkeeping; never for a decision. Both fields are cut to 64
    characters of printable ASCII, so a hostile token cannot inject into logs.
    """

    token_id: str
    case_id: str


def read_claims_unverified(token: bytes) -> ClaimedIdentity | None:
    """The token and case ids a token claims, or None if it does not even parse."""
    if not isinstance(token, bytes) or not token or len(token) > DEFAULT_MAX_TOKEN_BYTES:
        return None
    try:
        signed = authorization_pb2.SignedAuthorization.FromString(token)
        claims = authorization_pb2.AuthorizationClaims.FromString(signed.claims)
    except Exception:
        return None
    return ClaimedIdentity(
        token_id=shown(claims.token_id, quoted=False), case_id=shown(claims.case_id, quoted=False)
    )


def verify_authorization(
    token: bytes,
    *,
    trusted: TrustedAuthorities,
    custodian_id: str,
    peer_agency_id: str | None,
    now: dt.datetime,
    clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
) -> AuthorizationClaims:
    """Check a serialized ``SignedAuthorization`` and return its claims.

    ``peer_agency_id`` is the identity from the caller's verified client certificate
    (:func:`~psi_core.policy.identity.peer_identity_from_cert_pem`); pass ``None`` only on a
    transport with no client identity (plaintext loopback), which skips that one check. The token is
    valid for ``not_before - clock_skew <= now < expires_at + clock_skew``.

    Raises, in this order (see the module doc): :class:`AuthenticationError` for an
    oversized, empty or malformed token, an unknown issuer or a bad signature;
    :class:`PermissionDeniedError` for the wrong custodian or agency;
    :class:`AuthenticationError` outside the validity window or for unusable claims.
    :class:`InvalidInputError` if ``now`` is naive or ``clock_skew`` negative.
    """
    now = aware_datetime("now", now)
    if not isinstance(clock_skew, dt.timedelta) or clock_skew < dt.timedelta(0):
        raise InvalidInputError("clock_skew must be a non-negative duration")
    if not isinstance(token, bytes | bytearray | memoryview):
        raise AuthenticationError("authorization token is malformed")
    token = bytes(token)
    if not token:
        raise AuthenticationError("no authorization token was presented; ask the authority for one")
    if len(token) > max_token_bytes:
        raise AuthenticationError(
            f"authorization token is {len(token)} bytes, more than the {max_token_bytes} "
            "accepted; it is not a token an authority issued"
        )

    signed = authorization_pb2.SignedAuthorization()
    claims = authorization_pb2.AuthorizationClaims()
    try:
        signed.ParseFromString(token)
        claims.ParseFromString(signed.claims)
    except (DecodeError, ValueError, RuntimeError):
        raise AuthenticationError("authorization token is malformed") from None
    if not signed.claims or len(signed.signature) != 64:
        raise AuthenticationError("authorization token is malformed")

    keys = trusted.keys_for(claims.issuer) if claims.issuer else ()
    if not keys:
        raise AuthenticationError(
            f"authorization token was issued by {shown(claims.issuer)}, which this custodian "
            "does not trust; ask a trusted authority for a token"
        )
    message = SIGNATURE_DOMAIN + signed.claims
    for public in keys:
        try:
            public.verify(signed.signature, message)
            break
        except InvalidSignature:
            continue
    else:
        raise AuthenticationError(
            f"authorization token's signature does not verify against the key of "
            f"{claims.issuer}; the token was altered or was not signed by that authority"
        )

    if claims.custodian_id != custodian_id:
        raise PermissionDeniedError(
            f"authorization token is addressed to custodian {shown(claims.custodian_id)}, "
            f"not to this custodian ({custodian_id}); ask for a token addressed here"
        )
    if peer_agency_id is not None and claims.agency_id != peer_agency_id:
        raise PermissionDeniedError(
            f"token was issued to agency {shown(claims.agency_id)} but the caller's "
            f"certificate identifies {shown(peer_agency_id)}"
        )

    t = now.timestamp()
    skew = clock_skew.total_seconds()
    if t < claims.not_before - skew:
        raise AuthenticationError(
            f"authorization token is not valid until {_iso(claims.not_before)} and it is "
            f"{_iso(int(t))} here; wait until then or check this machine's clock"
        )
    if t >= claims.expires_at + skew:
        raise AuthenticationError(
            f"authorization token expired at {_iso(claims.expires_at)}; "
            "ask the authority for a new token"
        )

    problems = []
    for name in ("token_id", "agency_id", "case_id", "legal_basis"):
        if not getattr(claims, name):
            problems.append(f"{name} is empty")
    if claims.max_subjects <= 0:
        problems.append("max_subjects is 0")
    if claims.max_queries <= 0:
        problems.append("max_queries is 0")
    for name in ("not_before", "expires_at", "issued_at"):
        if not MIN_CLAIM_TIME <= getattr(claims, name) <= MAX_CLAIM_TIME:
            problems.append(f"{name} is outside 1970..9999")
    if claims.not_before >= claims.expires_at:
        problems.append("not_before is not before expires_at")
    if problems:
        raise AuthenticationError(
            f"authorization token {shown(claims.token_id)} is unusable ({'; '.join(problems)}); "
            "ask the authority to issue a correct one"
        )

    return AuthorizationClaims(
        token_id=claims.token_id,
        issuer=claims.issuer,
        agency_id=claims.agency_id,
        custodian_id=claims.custodian_id,
        case_id=claims.case_id,
        legal_basis=claims.legal_basis,
        max_subjects=claims.max_subjects,
        max_queries=claims.max_queries,
        not_before=_utc(claims.not_before),
        expires_at=_utc(claims.expires_at),
        issued_at=_utc(claims.issued_at),
    )


def aware_datetime(name: str, value: object) -> dt.datetime:
    """``value``, if it is a timezone-aware datetime; InvalidInputError naming ``name``."""
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise InvalidInputError(f"{name} must be a timezone-aware datetime")
    return value


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _iso(seconds: int) -> str:
    try:
        return utc_timestamp(_utc(seconds), timespec="auto")
    except (OverflowError, OSError, ValueError):
        return f"{seconds} seconds after 1970-01-01T00:00:00Z"
