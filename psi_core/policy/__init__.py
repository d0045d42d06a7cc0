"""Who may ask what, and the record of it: authorization verification, the budget ledger,
the hash-chained audit log, the SQLite base they share, and party identities from
certificates.
"""

from __future__ import annotations

from psi_core.policy.audit import (
    ADMITTED,
    GENESIS_HASH,
    AuditEntry,
    AuditLog,
    AuditVerification,
    canonical_event_json,
    entry_hash,
)
from psi_core.policy.authorization import (
    DEFAULT_CLOCK_SKEW,
    DEFAULT_MAX_TOKEN_BYTES,
    MAX_CLAIM_TIME,
    MIN_CLAIM_TIME,
    SIGNATURE_DOMAIN,
    AuthorityPaths,
    AuthorizationClaims,
    TrustedAuthorities,
    aware_datetime,
    key_id,
    read_authority_metadata,
    read_claims_unverified,
    verify_authorization,
)
from psi_core.policy.identity import (
    AGENCY_URI_PREFIX,
    CUSTODIAN_URI_PREFIX,
    ROLES,
    PkiPaths,
    TlsMaterial,
    is_loopback,
    load_tls_material,
    peer_identity_from_cert_pem,
    validate_party_id,
)
from psi_core.policy.ledger import (
    AuthorizationLedger,
    LedgerEntry,
    RequestKey,
    TokenBudget,
)
from psi_core.policy.sqlite import (
    SqliteFile,
)

__all__ = [
    "ADMITTED",
    "AGENCY_URI_PREFIX",
    "CUSTODIAN_URI_PREFIX",
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_MAX_TOKEN_BYTES",
    "GENESIS_HASH",
    "MAX_CLAIM_TIME",
    "MIN_CLAIM_TIME",
    "ROLES",
    "SIGNATURE_DOMAIN",
    "AuditEntry",
    "AuditLog",
    "AuditVerification",
    "AuthorityPaths",
    "AuthorizationClaims",
    "AuthorizationLedger",
    "LedgerEntry",
    "PkiPaths",
    "RequestKey",
    "SqliteFile",
    "TlsMaterial",
    "TokenBudget",
    "TrustedAuthorities",
    "aware_datetime",
    "canonical_event_json",
    "entry_hash",
    "is_loopback",
    "key_id",
    "load_tls_material",
    "peer_identity_from_cert_pem",
    "read_authority_metadata",
    "read_claims_unverified",
    "validate_party_id",
    "verify_authorization",
]
