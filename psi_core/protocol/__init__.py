"""The DH-PSI protocol: blinding, re-encryption, unblinding, fingerprints, multi-key
rules (``rules``), and the one module that owns openmined-psi (with the classic
stock-client messages).
"""

from __future__ import annotations

from psi_core.protocol.curve import (
    P256_ORDER,
    P256_PRIME,
    SCALAR_BYTES,
    Unblinder,
    check_compressed_point,
    is_valid_scalar,
)
from psi_core.protocol.dh import (
    BlindedQuery,
    FalsePositiveBound,
    Reencryptor,
    RequestDigest,
    distinct_keys,
)
from psi_core.protocol.fingerprint import (
    FINGERPRINT_BITS,
    FINGERPRINT_BYTES,
    INDEX_DTYPE,
    Fingerprints,
    is_strictly_increasing,
    member_mask,
)
from psi_core.protocol.openmined import (
    PROTOBUF_MESSAGE_LIMIT,
    Blinder,
    KeyCipher,
    classic_hash_range,
    classic_response,
    classic_setup,
    classic_setup_size_bound,
    parse_classic_request,
)
from psi_core.protocol.rules import (
    ALL,
    ANY,
    AT_LEAST,
    KeyDeclaration,
    KeyFlags,
    KeyHits,
    MatchRule,
    SubjectKeys,
    count_found,
)

__all__ = [
    "ALL",
    "ANY",
    "AT_LEAST",
    "FINGERPRINT_BITS",
    "FINGERPRINT_BYTES",
    "INDEX_DTYPE",
    "P256_ORDER",
    "P256_PRIME",
    "PROTOBUF_MESSAGE_LIMIT",
    "SCALAR_BYTES",
    "BlindedQuery",
    "Blinder",
    "FalsePositiveBound",
    "Fingerprints",
    "KeyCipher",
    "KeyDeclaration",
    "KeyFlags",
    "KeyHits",
    "MatchRule",
    "Reencryptor",
    "RequestDigest",
    "SubjectKeys",
    "Unblinder",
    "check_compressed_point",
    "classic_hash_range",
    "classic_response",
    "classic_setup",
    "classic_setup_size_bound",
    "count_found",
    "distinct_keys",
    "is_strictly_increasing",
    "is_valid_scalar",
    "member_mask",
    "parse_classic_request",
]
