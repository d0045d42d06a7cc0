"""An authority's side of legal authorizations: its Ed25519 key and the tokens it signs.

The custodian never runs this; it only verifies (:mod:`psi_core.policy.authorization`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from psi_core.errors import (
    InvalidInputError,
    PreconditionError,
    shown,
)
from psi_core.io import write_file_atomically
from psi_core.policy import (
    DEFAULT_MAX_TOKEN_BYTES,
    MAX_CLAIM_TIME,
    MIN_CLAIM_TIME,
    SIGNATURE_DOMAIN,
    AuthorityPaths,
    aware_datetime,
    key_id,
    read_authority_metadata,
    validate_party_id,
)
from psi_proto.v1 import authorization_pb2

_DURATION = re.compile(r"([0-9]{1,9})([dhms])")
#: What an authority signs at most: the verifier needs only non-empty fields and budgets
#: of at least one, so these bounds are the issuer's, checked before signing.
_MAX_CASE_ID = 128
_MAX_LEGAL_BASIS = 1024
_MAX_UINT32 = 2**32 - 1
_MAX_UINT64 = 2**64 - 1


_DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def init_authority(out_dir: str | os.PathLike[str], issuer_id: str) -> AuthorityPaths:
    """Create an authority key pair and its metadata under ``out_dir``.

    Writes ``authority.key`` (PKCS#8 PEM, mode 0600 from creation), ``authority.pub``
    (SubjectPublicKeyInfo PEM) and ``authority.json`` (``{"issuer", "key_id"}``).

    Raises :class:`InvalidInputError` for a bad issuer id and :class:`PreconditionError` if
    any of the three files already exists.
    """
    validate_party_id("issuer id", issuer_id)
    paths = AuthorityPaths.in_dir(out_dir)
    for existing in (paths.private_key, paths.public_key, paths.metadata):
        if existing.exists():
            raise PreconditionError(
                f"{existing} already exists; refusing to overwrite an authority key "
                "(tokens it signed would stop verifying). Choose another directory."
            )
    if paths.root.exists() and not paths.root.is_dir():
        raise PreconditionError(f"{paths.root} exists and is not a directory")
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    metadata = json.dumps({"issuer": issuer_id, "key_id": key_id(public)}, indent=2) + "\n"
    paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_file_atomically(paths.private_key, private_pem, 0o600)
    write_file_atomically(paths.public_key, public_pem, 0o644)
    write_file_atomically(paths.metadata, metadata.encode("utf-8"), 0o644)
    return paths


def parse_duration(text: str) -> dt.timedelta:
    """Read a positive duration written as a whole number and a unit: ``90d``, ``12h``,
    ``30m`` or ``45s``.

    Raises :class:`InvalidInputError` for anything else, including zero.
    """
    match = _DURATION.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if match is None:
        raise InvalidInputError(
            f"cannot read the duration {shown(text)}: write a whole number "
            "followed by d, h, m or s (for example 90d, 12h, 30m or 45s)"
        )
    amount = int(match.group(1))
    if amount == 0:
        raise InvalidInputError("a duration must be longer than zero")
    try:
        return dt.timedelta(**{_DURATION_UNITS[match.group(2)]: amount})
    except OverflowError:
        raise InvalidInputError(f"the duration {shown(text)} is too long") from None


def issue_authorization(
    authority_dir: str | os.PathLike[str],
    *,
    agency_id: str,
    custodian_id: str,
    case_id: str,
    legal_basis: str,
    max_subjects: int,
    max_queries: int,
    ttl: dt.timedelta,
    not_before: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> bytes:
    """Sign claims with the authority key in ``authority_dir``; return the serialized
    ``psi.v1.SignedAuthorization``.

    The token is valid from ``not_before`` (default: ``now``) for ``ttl``; ``now``
    (default: the current time) is recorded as ``issued_at``. Times are whole seconds,
    rounded down. The token id is 128 random bits in hex.

    Raises :class:`InvalidInputError` for an id, case id or legal basis that is empty or
    too long, a budget outside ``1..2**32-1`` queries or ``1..2**64-1`` subjects, a
    non-positive ``ttl`` or a naive datetime; :class:`PreconditionError` if the authority
    files are missing or unreadable.
    """
    validate_party_id("agency id", agency_id)
    validate_party_id("custodian id", custodian_id)
    _check_text("case id", case_id, _MAX_CASE_ID)
    _check_text("legal basis", legal_basis, _MAX_LEGAL_BASIS)
    _check_count("max_subjects", max_subjects, _MAX_UINT64)
    _check_count("max_queries", max_queries, _MAX_UINT32)
    if not isinstance(ttl, dt.timedelta) or ttl <= dt.timedelta(0):
        raise InvalidInputError("ttl must be a positive duration")
    issued = aware_datetime("now", now) if now is not None else dt.datetime.now(dt.UTC)
    start = aware_datetime("not_before", not_before) if not_before is not None else issued
    try:
        end = start + ttl
    except OverflowError:
        raise InvalidInputError("not_before + ttl is beyond the year 9999") from None
    nbf, exp, iat = (int(t.timestamp()) for t in (start, end, issued))
    for name, value in (("not_before", nbf), ("expiry", exp), ("issued_at", iat)):
        if not MIN_CLAIM_TIME <= value <= MAX_CLAIM_TIME:
            raise InvalidInputError(f"{name} must fall between 1970 and 9999")
    if nbf >= exp:
        raise InvalidInputError("ttl must be at least one second")

    private_key, issuer = _load_authority(authority_dir)
    claims = authorization_pb2.AuthorizationClaims(
        token_id=secrets.token_hex(16),
        issuer=issuer,
        agency_id=agency_id,
        custodian_id=custodian_id,
        case_id=case_id,
        legal_basis=legal_basis,
        max_subjects=max_subjects,
        max_queries=max_queries,
        not_before=nbf,
        expires_at=exp,
        issued_at=iat,
    ).SerializeToString(deterministic=True)
    token = authorization_pb2.SignedAuthorization(
        claims=claims, signature=private_key.sign(SIGNATURE_DOMAIN + claims)
    ).SerializeToString(deterministic=True)
    if len(token) > DEFAULT_MAX_TOKEN_BYTES:
        raise InvalidInputError(
            f"the token would be {len(token)} bytes, more than the {DEFAULT_MAX_TOKEN_BYTES} "
            "a custodian accepts; shorten the legal basis or case id"
        )
    return token


def _check_text(name: str, value: object, limit: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{name} must not be empty")
    if len(value) > limit:
        raise InvalidInputError(f"{name} is longer than {limit} characters")
    if not value.isprintable():
        raise InvalidInputError(f"{name} must not contain control characters")


def _check_count(name: str, value: object, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise InvalidInputError(f"{name} must be a whole number from 1 to {limit}")


def _load_authority(authority_dir: str | os.PathLike[str]) -> tuple[Ed25519PrivateKey, str]:
    paths = AuthorityPaths.in_dir(authority_dir)
    issuer, expected_key_id = read_authority_metadata(paths.metadata)
    try:
        pem = paths.private_key.read_bytes()
    except FileNotFoundError:
        raise PreconditionError(
            f"authority key {paths.private_key} is missing; create one with "
            "`psi authority init` (or point at the right directory)"
        ) from None
    except OSError as exc:
        raise PreconditionError(f"authority key {paths.private_key} cannot be read") from exc
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PreconditionError(
            f"{paths.private_key} is not an unencrypted PEM private key"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PreconditionError(f"{paths.private_key} is not an Ed25519 key")
    if key_id(key.public_key()) != expected_key_id:
        raise PreconditionError(
            f"{paths.private_key} does not match the key id in {paths.metadata}; "
            "the directory mixes files from two authorities"
        )
    return key, issuer
