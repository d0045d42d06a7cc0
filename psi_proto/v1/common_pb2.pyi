from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class QueryMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUERY_MODE_UNSPECIFIED: _ClassVar[QueryMode]
    QUERY_MODE_MEMBERSHIP: _ClassVar[QueryMode]
    QUERY_MODE_CARDINALITY: _ClassVar[QueryMode]
QUERY_MODE_UNSPECIFIED: QueryMode
QUERY_MODE_MEMBERSHIP: QueryMode
QUERY_MODE_CARDINALITY: QueryMode

class FalsePositiveBound(_message.Message):
    __slots__ = ("per_subject", "expected_false_matches", "fingerprint_bits")
    PER_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FALSE_MATCHES_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_BITS_FIELD_NUMBER: _ClassVar[int]
    per_subject: float
    expected_false_matches: float
    fingerprint_bits: int
    def __init__(self, per_subject: _Optional[float] = ..., expected_false_matches: _Optional[float] = ..., fingerprint_bits: _Optional[int] = ...) -> None: ...
