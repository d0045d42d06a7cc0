"""Tests of authority keys, signed authorizations and their verification."""

from __future__ import annotations

import datetime as dt
import json
import re
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from psi_core.errors import (
    AuthenticationError,
    InvalidInputError,
    PermissionDeniedError,
    PreconditionError,
)
from psi_core.policy import (
    SIGNATURE_DOMAIN,
    AuthorityPaths,
    AuthorizationClaims,
    TrustedAuthorities,
    key_id,
    read_claims_unverified,
    verify_authorization,
)
from psi_proto.v1 import authorization_pb2
from psi_tools.authority import init_authority, issue_authorization, parse_duration

NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
SKEW = dt.timedelta(seconds=60)
TTL = dt.timedelta(days=30)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> AuthorityPaths:
    return init_authority(tmp_path_factory.mktemp("authorities") / "court-1", "court-1")


@pytest.fixture(scope="module")
def trusted(authority: AuthorityPaths) -> TrustedAuthorities:
    return TrustedAuthorities.load([authority.root])


def _issue(authority: AuthorityPaths, **overrides: object) -> bytes:
    kwargs: dict[str, object] = {
        "agency_id": "ice-ero",
        "custodian_id": "irs",
        "case_id": "CASE-2025-0042",
        "legal_basis": "8 U.S.C. 1357; warrant 25-MJ-118",
        "max_subjects": 1000,
        "max_queries": 3,
        "ttl": TTL,
        "now": NOW,
    }
    kwargs.update(overrides)
    return issue_authorization(authority.root, **kwargs)  # type: ignore[arg-type]


def _verify(token: bytes, trusted: TrustedAuthorities, **overrides: object) -> AuthorizationClaims:
    kwargs: dict[str, object] = {
        "trusted": trusted,
        "custodian_id": "irs",
        "peer_agency_id": "ice-ero",
        "now": NOW,
    }
    kwargs.update(overrides)
    return verify_authorization(token, **kwargs)  # type: ignore[arg-type]


def _private_key(authority: AuthorityPaths) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(authority.private_key.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def _sign_claims(authority: AuthorityPaths, claims: authorization_pb2.AuthorizationClaims) -> bytes:
    raw = claims.SerializeToString()
    signature = _private_key(authority).sign(SIGNATURE_DOMAIN + raw)
    return authorization_pb2.SignedAuthorization(
        claims=raw, signature=signature
    ).SerializeToString()


def _good_claims(**overrides: object) -> authorization_pb2.AuthorizationClaims:
    start = int(NOW.timestamp())
    fields: dict[str, object] = {
        "token_id": "ab" * 16,
        "issuer": "court-1",
        "agency_id": "ice-ero",
        "custodian_id": "irs",
        "case_id": "CASE-1",
        "legal_basis": "statute",
        "max_subjects": 10,
        "max_queries": 1,
        "not_before": start,
        "expires_at": start + 3600,
        "issued_at": start,
    }
    fields.update(overrides)
    return authorization_pb2.AuthorizationClaims(**fields)  # type: ignore[arg-type]


def _with_claims(token: bytes, mutate: object) -> bytes:
    signed = authorization_pb2.SignedAuthorization.FromString(token)
    assert callable(mutate)
    signed.claims = mutate(signed.claims)
    return signed.SerializeToString()


# Positive cases


def test_round_trip_returns_the_issued_claims(
    authority: AuthorityPaths, trusted: TrustedAuthorities
) -> None:
    """A freshly issued token verifies and carries exactly the claims it was issued with."""
    claims = _verify(_issue(authority), trusted)
    assert claims.issuer == "court-1"
    assert claims.agency_id == "ice-ero"
    assert claims.custodian_id == "irs"
    assert claims.case_id == "CASE-2025-0042"
    assert claims.legal_basis == "8 U.S.C. 1357; warrant 25-MJ-118"
    assert (claims.max_subjects, claims.max_queries) == (1000, 3)
    assert claims.not_before == NOW
    assert claims.issued_at == NOW
    assert claims.expires_at == NOW + TTL
    assert re.fullmatch(r"[0-9a-f]{32}", claims.token_id)


def test_token_ids_are_random(authority: AuthorityPaths, trusted: TrustedAuthorities) -> None:
    """Two tokens issued with identical arguments get different token ids."""
    ids = {_verify(_issue(authority), trusted).token_id for _ in range(5)}
    assert len(ids) == 5


def test_explicit_not_before_starts_the_window(
    authority: AuthorityPaths, trusted: TrustedAuthorities
) -> None:
    """A token with a future not_before verifies from then until not_before + ttl."""
    start = NOW + dt.timedelta(days=2)
    token = _issue(authority, not_before=start, ttl=dt.timedelta(hours=1))
    claims = _verify(token, trusted, now=start + dt.timedelta(minutes=30))
    assert claims.not_before == start
    assert claims.expires_at == start + dt.timedelta(hours=1)
    assert claims.issued_at == NOW


@pytest.mark.parametrize(
    "now",
    [
        NOW - SKEW,
        NOW + TTL + SKEW - dt.timedelta(seconds=1),
    ],
)
def test_clock_skew_is_allowed_at_both_ends(
    authority: AuthorityPaths, trusted: TrustedAuthorities, now: dt.datetime
) -> None:
    """A token verifies up to clock_skew before not_before and until clock_skew after expiry."""
    _verify(_issue(authority), trusted, now=now)


def test_no_peer_identity_skips_only_the_agency_check(
    authority: AuthorityPaths, trusted: TrustedAuthorities
) -> None:
    """With peer_agency_id=None (no client certificate) a valid token still verifies."""
    assert _verify(_issue(authority), trusted, peer_agency_id=None).agency_id == "ice-ero"


def test_signature_covers_the_domain_separated_claims(authority: AuthorityPaths) -> None:
    """The signature verifies over the domain prefix + claims and not over the bare claims."""
    signed = authorization_pb2.SignedAuthorization.FromString(_issue(authority))
    public = _private_key(authority).public_key()
    public.verify(signed.signature, b"psi.v1.AuthorizationClaims\x00" + signed.claims)
    with pytest.raises(InvalidSignature):
        public.verify(signed.signature, signed.claims)


def test_init_authority_writes_keys_and_metadata(tmp_path: Path) -> None:
    """init_authority writes a 0600 PKCS8 key, a public key, and JSON with issuer and key id."""
    paths = init_authority(tmp_path / "a", "court-9")
    assert stat.S_IMODE(paths.private_key.stat().st_mode) == 0o600
    meta = json.loads(paths.metadata.read_text())
    public = serialization.load_pem_public_key(paths.public_key.read_bytes())
    assert meta == {"issuer": "court-9", "key_id": key_id(public)}  # type: ignore[arg-type]
    assert re.fullmatch(r"[0-9a-f]{16}", meta["key_id"])
    assert b"BEGIN PRIVATE KEY" in paths.private_key.read_bytes()


def test_trusted_authorities_load_from_files_dirs_and_parent_dirs(tmp_path: Path) -> None:
    """An authority is found from its .pub file, its directory, or a directory of directories."""
    a = init_authority(tmp_path / "all" / "a", "court-a")
    b = init_authority(tmp_path / "all" / "b", "court-b")
    assert TrustedAuthorities.load([a.public_key]).issuers == {"court-a"}
    assert TrustedAuthorities.load([b.root]).issuers == {"court-b"}
    assert TrustedAuthorities.from_directory(tmp_path / "all").issuers == {"court-a", "court-b"}


def test_trusted_authorities_need_only_public_files(
    authority: AuthorityPaths, tmp_path: Path
) -> None:
    """A directory with only authority.pub and authority.json is enough to verify tokens."""
    public_dir = tmp_path / "pub"
    public_dir.mkdir()
    (public_dir / "authority.pub").write_bytes(authority.public_key.read_bytes())
    (public_dir / "authority.json").write_bytes(authority.metadata.read_bytes())
    _verify(_issue(authority), TrustedAuthorities.load([public_dir]))


def test_a_rotated_issuer_accepts_tokens_from_both_keys(tmp_path: Path) -> None:
    """Two keys with the same issuer id are both trusted, so tokens from either verify."""
    old = init_authority(tmp_path / "old", "court-r")
    new = init_authority(tmp_path / "new", "court-r")
    trusted = TrustedAuthorities.load([old.root, new.root])
    assert len(trusted.keys_for("court-r")) == 2
    _verify(_issue(old), trusted)
    _verify(_issue(new), trusted)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", dt.timedelta(days=90)),
        ("12h", dt.timedelta(hours=12)),
        ("30m", dt.timedelta(minutes=30)),
        ("45s", dt.timedelta(seconds=45)),
        (" 7D ", dt.timedelta(days=7)),
    ],
)
def test_parse_duration_reads_each_unit(text: str, expected: dt.timedelta) -> None:
    """parse_duration reads a whole number followed by d, h, m or s."""
    assert parse_duration(text) == expected


# Negative cases


def test_every_tampered_claims_byte_is_rejected(
    authority: AuthorityPaths, trusted: TrustedAuthorities
) -> None:
    """Flipping any single bit of the signed claims makes verification raise AuthenticationError."""
    token = _issue(authority)
    n = len(authorization_pb2.SignedAuthorization.FromString(token).claims)
    for i in range(n):
        for bit in (0x01, 0x80):
            forged = _with_claims(
                token, lambda c, i=i, bit=bit: c[:i] + bytes([c[i] ^ bit]) + c[i + 1 :]
            )
            with pytest.raises(AuthenticationError):
                _verify(forged, trusted)


def test_raised_budget_is_rejected_as_a_bad_signature(
    authority: AuthorityPaths, trusted: TrustedAuthorities
) -> None:
    """Re-encoding the claims with a larger max_queries fails the signature check."""

    def raise_budget(raw: bytes) -> bytes:
        claims = authorization_pb2.AuthorizationClaims.FromString(raw)
        claims.max_queries = 1_000_000
        return claims.SerializeToString()

    with pytest.raises(AuthenticationError, match="signature does not verify"):
        _verify(_with_claims(_issue(authority), raise_budget), trusted)


@pytest.mark.parametrize("position", [0, 31, 63])
def test_tampered_signature_is_rejected(
    authority: AuthorityPaths, trusted: TrustedAuthorities, position: int
) -> None:
    """Changing one byte of the signature raises AuthenticationError."""
    signed = authorization_pb2.SignedAuthorization.FromString(_issue(authority))
    sig = bytearray(signed.signature)
    sig[position] ^= 0x04
    signed.signature = bytes(sig)
    with pytest.raises(AuthenticationError, match="signature does not verify"):
        _verify(signed.SerializeToString(), trusted)


@pytest.mark.parametrize("length", [0, 63, 65])
def test_signature_of_wrong_length_is_malformed(
    authority: AuthorityPaths, trusted: TrustedAuthorities, length: int
) -> None:
    """A signature that is not 64 bytes is reported as a malformed token."""
    signed = authorization_pb2.SignedAuthorization.FromString(_issue(authority))
    signed.signature = bytes(length)
    with pytest.raises(AuthenticationError, match="malformed"):
        _verify(signed.SerializeToString(), trusted)


def test_unknown_issuer_is_rejected(tmp_path: Path, trusted: TrustedAuthorities) -> None:
    """A token from an authority the custodian does not trust raises AuthenticationError."""
    stranger = init_authority(tmp_path / "x", "county-clerk")
    with pytest.raises(AuthenticationError, match="'county-clerk', which this custodian does not"):
        _verify(_issue(stranger), trusted)


def test_impostor_with_a_trusted_issuer_name_is_rejected(
    tmp_path: Path, trusted: TrustedAuthorities
) -> None:
    """A different key claiming a trusted issuer id fails the signature check."""
    impostor = init_authority(tmp_path / "x", "court-1")
    with pytest.raises(AuthenticationError, match="signature does not verify"):
        _verify(_issue(impostor), trusted)


def test_wrong_audience_is_permission_denied(
    authority: AuthorityPaths, trusted: TrustedAuthorities
) -> None:
    """A token addressed to another custodian raises PermissionDeniedError."""
    token = _issue(authority, custodian_id="ssa")
    with pytest.raises(PermissionDeniedError, match="addressed to custodian 'ssa'"):
        _verify(token, trusted)


def test_wrong_agency_is_permission_denied(
    authority: AuthorityPaths, trusted: TrustedAuthorities
) -> None:
    """A token used by an agency other than its own raises PermissionDeniedError naming both."""
    with pytest.raises(PermissionDeniedError) as info:
        _verify(_issue(authority), trusted, peer_agency_id="cbp")
    assert str(info.value) == (
        "token was issued to agency 'ice-ero' but the caller's certificate identifies 'cbp'"
    )


def test_expired_token_says_when_and_what_to_do(
    authority: AuthorityPaths, trusted: TrustedAuthorities
) -> None:
    """At expires_at + skew a token raises AuthenticationError naming the expiry time."""
    with pytest.raises(AuthenticationError) as info:
        _verify(_issue(authority), trusted, now=NOW + TTL + SKEW)
    assert "expired at 2025-03-31T12:00:00Z" in str(info.value)
    assert "ask the authority for a new token" in str(info.value)


def test_not_yet_valid_token_is_rejected(
    authority: AuthorityPaths, trusted: TrustedAuthorities
) -> None:
    """Earlier than not_before - skew a token raises AuthenticationError naming not_before."""
    with pytest.raises(AuthenticationError, match="not valid until 2025-03-01T12:00:00Z"):
        _verify(_issue(authority), trusted, now=NOW - SKEW - dt.timedelta(seconds=1))


def test_zero_skew_is_strict(authority: AuthorityPaths, trusted: TrustedAuthorities) -> None:
    """With clock_skew=0 a token is rejected one second before not_before and at expires_at."""
    token = _issue(authority)
    zero = dt.timedelta(0)
    with pytest.raises(AuthenticationError, match="not valid until"):
        _verify(token, trusted, now=NOW - dt.timedelta(seconds=1), clock_skew=zero)
    with pytest.raises(AuthenticationError, match="expired"):
        _verify(token, trusted, now=NOW + TTL, clock_skew=zero)


def test_oversize_token_is_rejected_before_parsing(
    authority: AuthorityPaths, trusted: TrustedAuthorities
) -> None:
    """A token over max_token_bytes raises AuthenticationError about its size, even if valid."""
    token = _issue(authority)
    with pytest.raises(AuthenticationError, match="more than the 100 accepted"):
        _verify(token, trusted, max_token_bytes=100)
    with pytest.raises(AuthenticationError, match="more than the 4096 accepted"):
        _verify(b"\x00" * 4097, trusted)


@pytest.mark.parametrize(
    "token",
    [
        b"",
        b"\xff" * 10,
        b"\x0a\x05abc",
        authorization_pb2.SignedAuthorization(signature=bytes(64)).SerializeToString(),
        authorization_pb2.SignedAuthorization(
            claims=b"\xff\xff", signature=bytes(64)
        ).SerializeToString(),
    ],
)
def test_garbage_tokens_are_rejected(trusted: TrustedAuthorities, token: bytes) -> None:
    """Empty, truncated or non-protobuf tokens raise AuthenticationError without echoing bytes."""
    with pytest.raises(AuthenticationError) as info:
        _verify(token, trusted)
    assert "\\x" not in str(info.value)


@settings(database=None, deadline=None, max_examples=300)
@given(token=st.binary(max_size=5000))
def test_arbitrary_bytes_only_raise_authentication_errors(
    trusted: TrustedAuthorities, token: bytes
) -> None:
    """Arbitrary bytes never verify and never raise anything but AuthenticationError."""
    with pytest.raises(AuthenticationError):
        _verify(token, trusted)


@settings(database=None, deadline=None, max_examples=300)
@given(claims=st.binary(max_size=600), signature=st.binary(min_size=64, max_size=64))
def test_arbitrary_claims_in_a_well_formed_envelope_are_rejected(
    trusted: TrustedAuthorities, claims: bytes, signature: bytes
) -> None:
    """Any claims bytes with a forged 64-byte signature raise only AuthenticationError."""
    token = authorization_pb2.SignedAuthorization(
        claims=claims, signature=signature
    ).SerializeToString()
    with pytest.raises(AuthenticationError):
        _verify(token, trusted)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"max_subjects": 0}, "max_subjects is 0"),
        ({"max_queries": 0}, "max_queries is 0"),
        ({"token_id": ""}, "token_id is empty"),
        ({"case_id": ""}, "case_id is empty"),
        ({"legal_basis": ""}, "legal_basis is empty"),
        (
            {"not_before": int(NOW.timestamp()) - 10, "expires_at": int(NOW.timestamp()) - 20},
            "not_before is not before expires_at",
        ),
        ({"issued_at": -5}, "issued_at is outside"),
    ],
)
def test_signed_but_unusable_claims_are_rejected(
    authority: AuthorityPaths,
    trusted: TrustedAuthorities,
    overrides: dict[str, object],
    problem: str,
) -> None:
    """Claims a trusted authority signed with a zero budget or broken window still fail."""
    token = _sign_claims(authority, _good_claims(**overrides))
    with pytest.raises(AuthenticationError, match=problem):
        _verify(token, trusted, now=NOW - dt.timedelta(seconds=15))


def test_checks_run_in_the_documented_order(
    authority: AuthorityPaths, trusted: TrustedAuthorities
) -> None:
    """Size precedes parsing, signature precedes audience, and audience/agency precede time."""
    with pytest.raises(AuthenticationError, match="bytes, more than"):
        _verify(b"\xff" * 5000, trusted)
    forged = _with_claims(
        _issue(authority, custodian_id="ssa"), lambda c: c[:-1] + bytes([c[-1] ^ 1])
    )
    with pytest.raises(AuthenticationError, match="signature"):
        _verify(forged, trusted)
    with pytest.raises(PermissionDeniedError):
        _verify(_issue(authority), trusted, peer_agency_id="cbp", now=NOW + 10 * TTL)


@pytest.mark.parametrize(
    "overrides",
    [
        {"now": dt.datetime(2025, 3, 1, 12, 0, 0)},
        {"clock_skew": dt.timedelta(seconds=-1)},
    ],
)
def test_verify_rejects_bad_caller_arguments(
    authority: AuthorityPaths, trusted: TrustedAuthorities, overrides: dict[str, object]
) -> None:
    """A naive `now` or a negative skew is the caller's mistake: InvalidInputError."""
    with pytest.raises(InvalidInputError):
        _verify(_issue(authority), trusted, **overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_subjects": 0},
        {"max_queries": 0},
        {"max_queries": 2**32},
        {"max_subjects": True},
        {"ttl": dt.timedelta(0)},
        {"ttl": dt.timedelta(seconds=-5)},
        {"ttl": dt.timedelta(milliseconds=500)},
        {"not_before": dt.datetime(2025, 1, 1)},
        {"agency_id": "ice ero"},
        {"custodian_id": ""},
        {"case_id": "   "},
        {"case_id": "x" * 129},
        {"legal_basis": "line\nbreak"},
        {"legal_basis": "x" * 1025},
    ],
)
def test_issue_rejects_bad_arguments(
    authority: AuthorityPaths, overrides: dict[str, object]
) -> None:
    """Issuing with an unusable budget, window or id raises InvalidInputError."""
    with pytest.raises(InvalidInputError):
        _issue(authority, **overrides)


def test_issue_without_an_authority_key_names_the_file(tmp_path: Path) -> None:
    """Issuing from a directory without authority files raises PreconditionError naming it."""
    with pytest.raises(PreconditionError, match=r"authority\.json is missing"):
        issue_authorization(
            tmp_path,
            agency_id="a",
            custodian_id="c",
            case_id="k",
            legal_basis="l",
            max_subjects=1,
            max_queries=1,
            ttl=TTL,
        )


@pytest.mark.parametrize(
    "text", ["", "90", "d", "1.5h", "-5m", "0s", "5w", "10 days", "1d2h", "9999999999d", "١٢h"]
)
def test_parse_duration_rejects_nonsense(text: str) -> None:
    """Anything but a positive whole number and one of d/h/m/s raises InvalidInputError."""
    with pytest.raises(InvalidInputError):
        parse_duration(text)


def test_init_authority_refuses_to_overwrite(authority: AuthorityPaths) -> None:
    """A second init in the same directory raises PreconditionError and keeps the key."""
    before = authority.private_key.read_bytes()
    with pytest.raises(PreconditionError, match="refusing to overwrite"):
        init_authority(authority.root, "court-1")
    assert authority.private_key.read_bytes() == before


@pytest.mark.parametrize("issuer", ["", "court 1", "-x", "x" * 65])
def test_init_authority_rejects_bad_issuer_ids(tmp_path: Path, issuer: str) -> None:
    """An issuer id that is not a party id raises InvalidInputError and writes nothing."""
    with pytest.raises(InvalidInputError):
        init_authority(tmp_path / "a", issuer)
    assert not (tmp_path / "a").exists()


def test_trusted_authorities_reject_missing_and_empty_paths(tmp_path: Path) -> None:
    """A path that does not exist, or holds no authority, raises PreconditionError."""
    with pytest.raises(PreconditionError, match="does not exist"):
        TrustedAuthorities.load([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PreconditionError, match="holds no authority"):
        TrustedAuthorities.load([tmp_path / "empty"])
    with pytest.raises(PreconditionError, match="no trusted authority"):
        TrustedAuthorities.load([])


def test_trusted_authorities_reject_mixed_up_files(tmp_path: Path) -> None:
    """An authority.pub whose key id differs from authority.json raises PreconditionError."""
    a = init_authority(tmp_path / "a", "court-a")
    b = init_authority(tmp_path / "b", "court-b")
    b.public_key.write_bytes(a.public_key.read_bytes())
    with pytest.raises(PreconditionError, match="does not match the key id"):
        TrustedAuthorities.load([b.root])


def test_trusted_authorities_reject_non_ed25519_keys(tmp_path: Path) -> None:
    """A P-256 public key in authority.pub raises PreconditionError."""
    a = init_authority(tmp_path / "a", "court-a")
    a.public_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(PreconditionError, match="not an Ed25519 public key"):
        TrustedAuthorities.load([a.root])


def test_claims_read_unverified_name_the_token_and_case(authority):
    """An unverified read gives the token's own token id and case id, for audit entries."""
    token = _issue(authority, case_id="C-77")
    claimed = read_claims_unverified(token)
    assert claimed is not None
    assert claimed.case_id == "C-77"
    assert len(claimed.token_id) == 32


@pytest.mark.parametrize("token", [b"", b"\xff" * 10, b"\x00" * 5000, "not bytes"])
def test_unreadable_tokens_claim_nothing(token):
    """Garbage, empty, oversized or non-bytes tokens give None, never an exception."""
    assert read_claims_unverified(token) is None


def test_claimed_ids_are_printable_and_short():
    """Control characters and overlong ids from a hostile token cannot reach a log as-is."""
    from psi_proto.v1 import authorization_pb2

    claims = authorization_pb2.AuthorizationClaims(
        token_id="a\nb\x1b[31m" + "x" * 100, case_id="ok"
    )
    token = authorization_pb2.SignedAuthorization(
        claims=claims.SerializeToString()
    ).SerializeToString()
    claimed = read_claims_unverified(token)
    assert claimed is not None
    assert claimed.token_id.startswith("a?b?[31m")
    assert len(claimed.token_id) == 64
