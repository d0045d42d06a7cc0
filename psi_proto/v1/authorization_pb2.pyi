from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AuthorizationClaims(_message.Message):
    __slots__ = ("token_id", "issuer", "agency_id", "custodian_id", "case_id", "legal_basis", "max_subjects", "max_queries", "not_before", "expires_at", "issued_at")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    AGENCY_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTODIAN_ID_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    MAX_SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERIES_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    issuer: str
    agency_id: str
    custodian_id: str
    case_id: str
    legal_basis: str
    max_subjects: int
    max_queries: int
    not_before: int
    expires_at: int
    issued_at: int
    def __init__(self, token_id: _Optional[str] = ..., issuer: _Optional[str] = ..., agency_id: _Optional[str] = ..., custodian_id: _Optional[str] = ..., case_id: _Optional[str] = ..., legal_basis: _Optional[str] = ..., max_subjects: _Optional[int] = ..., max_queries: _Optional[int] = ..., not_before: _Optional[int] = ..., expires_at: _Optional[int] = ..., issued_at: _Optional[int] = ...) -> None: ...

class SignedAuthorization(_message.Message):
    __slots__ = ("claims", "signature")
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    claims: bytes
    signature: bytes
    def __init__(self, claims: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...
