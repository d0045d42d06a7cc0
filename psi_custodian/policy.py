"""The custodian's admission policy: who may query, and how much, checked before curve work.

The service calls ``AdmissionPolicy.admit`` on every request that would touch the
epoch key, with the caller's mTLS identity and the authorization token it sent. The
policy verifies the token (signature, issuer, audience, validity window, that its
agency is the caller) and charges the token's budget atomically in the ledger. Only then
does the service run openmined-psi.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from psi_core.policy import (
    ADMITTED,
    AuditLog,
    AuthorizationClaims,
    AuthorizationLedger,
    LedgerEntry,
    RequestKey,
    TrustedAuthorities,
    verify_authorization,
)


@dataclass(frozen=True)
class AdmissionRequest:
    """What a request asks for. ``peer_agency_id`` is None only on plaintext loopback."""

    kind: str
    authorization: bytes
    subjects: int
    mode: str
    peer_agency_id: str | None
    charge: bool = True
    replay_of: RequestKey | None = None
    #: With ``replay_of``: the most uncharged replays the token may have.
    max_replays: int | None = None
    #: For an uncharged request (``charge=False``): count it as a use of this kind, at most
    #: ``limit`` per token (``what``, ``limit``, a label for the refusal).
    count_use: tuple[str, int, str] | None = None
    #: The request's audit event so far; once admitted, an "admitted" entry with it is
    #: written in the very transaction that charges (or counts) the request.
    audit_event: Mapping[str, object] | None = None


@dataclass(frozen=True)
class Admission:
    token_id: str
    case_id: str
    agency_id: str
    subjects_left: int
    queries_left: int
    replayed: bool = False


class AdmissionPolicy(Protocol):
    def admit(self, request: AdmissionRequest) -> Admission:
        """Return the admission, or raise a PsiError saying why the request is refused.

        ``replayed`` is set when the request was admitted uncharged as a replay of
        ``request.replay_of``; the caller must then check the points against it before
        answering.
        """
        ...

    def record_answered(self, admission: Admission, request: RequestKey) -> None:
        """Note that ``request`` was answered in full, so that it may be replayed."""
        ...


class AuthorizationPolicy:
    """Signed authorizations from trusted authorities, with per-token budgets."""

    def __init__(
        self,
        *,
        custodian_id: str,
        trusted: TrustedAuthorities,
        ledger: AuthorizationLedger,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock_skew: timedelta = timedelta(seconds=60),
    ) -> None:
        """``audit``, which must share ``ledger``'s connection (``AuditLog(..., share=
        ledger)``), gets the "admitted" entry of every request that carries an
        ``audit_event``, in the transaction of its charge."""
        self._custodian_id = custodian_id
        self._trusted = trusted
        self._ledger = ledger
        self._audit = audit
        self._clock = clock
        self._skew = clock_skew

    def admit(self, request: AdmissionRequest) -> Admission:
        claims = verify_authorization(
            request.authorization,
            trusted=self._trusted,
            custodian_id=self._custodian_id,
            peer_agency_id=request.peer_agency_id,
            now=self._clock(),
            clock_skew=self._skew,
        )
        replayed = False
        record = self._admitted_entry(request, claims)
        if request.charge:
            usage = self._ledger.charge(
                claims,
                request.subjects,
                replay_of=request.replay_of,
                max_replays=request.max_replays,
                record=record,
            )
            subjects_left, queries_left = usage.subjects_left, usage.queries_left
            replayed = usage.replayed
        elif request.count_use is not None:
            what, limit, label = request.count_use
            usage = self._ledger.count_use(claims, what, limit, label=label, record=record)
            subjects_left, queries_left = usage.subjects_left, usage.queries_left
        else:
            usage = self._ledger.usage(claims.token_id)
            subjects_left = usage.subjects_left if usage else claims.max_subjects
            queries_left = usage.queries_left if usage else claims.max_queries
        return Admission(
            token_id=claims.token_id,
            case_id=claims.case_id,
            agency_id=claims.agency_id,
            subjects_left=subjects_left,
            queries_left=queries_left,
            replayed=replayed,
        )

    def record_answered(self, admission: Admission, request: RequestKey) -> None:
        self._ledger.record_answered(admission.token_id, request)

    def _admitted_entry(
        self, request: AdmissionRequest, claims: AuthorizationClaims
    ) -> Callable[[sqlite3.Connection, LedgerEntry], None] | None:
        audit, event = self._audit, request.audit_event
        if audit is None or event is None:
            return None

        def record(conn: sqlite3.Connection, entry: LedgerEntry) -> None:
            audit.append_in(
                conn,
                {
                    **event,
                    "stage": ADMITTED,
                    "token_id": claims.token_id,
                    "case_id": claims.case_id,
                    "verified": True,
                    "charged": request.charge and not entry.replayed,
                },
            )

        return record
