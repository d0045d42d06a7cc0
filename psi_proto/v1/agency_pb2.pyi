from psi_proto.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MatchRuleKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCH_RULE_KIND_UNSPECIFIED: _ClassVar[MatchRuleKind]
    MATCH_RULE_KIND_ANY: _ClassVar[MatchRuleKind]
    MATCH_RULE_KIND_ALL: _ClassVar[MatchRuleKind]
    MATCH_RULE_KIND_AT_LEAST: _ClassVar[MatchRuleKind]

class QueryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUERY_STATE_UNSPECIFIED: _ClassVar[QueryState]
    QUERY_STATE_QUEUED: _ClassVar[QueryState]
    QUERY_STATE_RUNNING: _ClassVar[QueryState]
    QUERY_STATE_SUCCEEDED: _ClassVar[QueryState]
    QUERY_STATE_FAILED: _ClassVar[QueryState]
MATCH_RULE_KIND_UNSPECIFIED: MatchRuleKind
MATCH_RULE_KIND_ANY: MatchRuleKind
MATCH_RULE_KIND_ALL: MatchRuleKind
MATCH_RULE_KIND_AT_LEAST: MatchRuleKind
QUERY_STATE_UNSPECIFIED: QueryState
QUERY_STATE_QUEUED: QueryState
QUERY_STATE_RUNNING: QueryState
QUERY_STATE_SUCCEEDED: QueryState
QUERY_STATE_FAILED: QueryState

class Subject(_message.Message):
    __slots__ = ("subject_id", "given_name", "family_name", "date_of_birth", "street", "city", "state", "zip", "tin")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    STREET_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ZIP_FIELD_NUMBER: _ClassVar[int]
    TIN_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    given_name: str
    family_name: str
    date_of_birth: str
    street: str
    city: str
    state: str
    zip: str
    tin: str
    def __init__(self, subject_id: _Optional[str] = ..., given_name: _Optional[str] = ..., family_name: _Optional[str] = ..., date_of_birth: _Optional[str] = ..., street: _Optional[str] = ..., city: _Optional[str] = ..., state: _Optional[str] = ..., zip: _Optional[str] = ..., tin: _Optional[str] = ...) -> None: ...

class QueryHeader(_message.Message):
    __slots__ = ("authorization", "mode", "recipe", "requested_by", "recipes", "rule")
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    RECIPES_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    authorization: bytes
    mode: _common_pb2.QueryMode
    recipe: str
    requested_by: str
    recipes: _containers.RepeatedScalarFieldContainer[str]
    rule: MatchRule
    def __init__(self, authorization: _Optional[bytes] = ..., mode: _Optional[_Union[_common_pb2.QueryMode, str]] = ..., recipe: _Optional[str] = ..., requested_by: _Optional[str] = ..., recipes: _Optional[_Iterable[str]] = ..., rule: _Optional[_Union[MatchRule, _Mapping]] = ...) -> None: ...

class MatchRule(_message.Message):
    __slots__ = ("kind", "at_least")
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    kind: MatchRuleKind
    at_least: int
    def __init__(self, kind: _Optional[_Union[MatchRuleKind, str]] = ..., at_least: _Optional[int] = ...) -> None: ...

class SubjectBatch(_message.Message):
    __slots__ = ("subjects",)
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    subjects: _containers.RepeatedCompositeFieldContainer[Subject]
    def __init__(self, subjects: _Optional[_Iterable[_Union[Subject, _Mapping]]] = ...) -> None: ...

class SubmitEnd(_message.Message):
    __slots__ = ("subject_count",)
    SUBJECT_COUNT_FIELD_NUMBER: _ClassVar[int]
    subject_count: int
    def __init__(self, subject_count: _Optional[int] = ...) -> None: ...

class SubmitQueryRequest(_message.Message):
    __slots__ = ("header", "batch", "end")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    header: QueryHeader
    batch: SubjectBatch
    end: SubmitEnd
    def __init__(self, header: _Optional[_Union[QueryHeader, _Mapping]] = ..., batch: _Optional[_Union[SubjectBatch, _Mapping]] = ..., end: _Optional[_Union[SubmitEnd, _Mapping]] = ...) -> None: ...

class GetQueryRequest(_message.Message):
    __slots__ = ("query_id",)
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    def __init__(self, query_id: _Optional[str] = ...) -> None: ...

class ListMatchesRequest(_message.Message):
    __slots__ = ("query_id",)
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    def __init__(self, query_id: _Optional[str] = ...) -> None: ...

class ListQueriesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state", "case_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: QueryState
    case_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[QueryState, str]] = ..., case_id: _Optional[str] = ...) -> None: ...

class ListQueriesResponse(_message.Message):
    __slots__ = ("queries", "next_page_token")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[QueryStatus]
    next_page_token: str
    def __init__(self, queries: _Optional[_Iterable[_Union[QueryStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PhaseTimings(_message.Message):
    __slots__ = ("blind_seconds", "evaluate_seconds", "unblind_seconds", "lookup_seconds")
    BLIND_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EVALUATE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UNBLIND_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    blind_seconds: float
    evaluate_seconds: float
    unblind_seconds: float
    lookup_seconds: float
    def __init__(self, blind_seconds: _Optional[float] = ..., evaluate_seconds: _Optional[float] = ..., unblind_seconds: _Optional[float] = ..., lookup_seconds: _Optional[float] = ...) -> None: ...

class QueryStatus(_message.Message):
    __slots__ = ("query_id", "state", "mode", "recipe", "subject_count", "keyed_subject_count", "processed_count", "match_count", "false_positive_bound", "epoch_id", "error_code", "error_message", "timings", "case_id", "waiting_reason", "attempts", "recipes", "rule", "rule_id", "quality", "agency_backend", "custodian_backend", "created_at", "updated_at", "no_key_counts")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_COUNT_FIELD_NUMBER: _ClassVar[int]
    KEYED_SUBJECT_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_COUNT_FIELD_NUMBER: _ClassVar[int]
    MATCH_COUNT_FIELD_NUMBER: _ClassVar[int]
    FALSE_POSITIVE_BOUND_FIELD_NUMBER: _ClassVar[int]
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    WAITING_REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RECIPES_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    AGENCY_BACKEND_FIELD_NUMBER: _ClassVar[int]
    CUSTODIAN_BACKEND_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    NO_KEY_COUNTS_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    state: QueryState
    mode: _common_pb2.QueryMode
    recipe: str
    subject_count: int
    keyed_subject_count: int
    processed_count: int
    match_count: int
    false_positive_bound: _common_pb2.FalsePositiveBound
    epoch_id: str
    error_code: str
    error_message: str
    timings: PhaseTimings
    case_id: str
    waiting_reason: str
    attempts: int
    recipes: _containers.RepeatedScalarFieldContainer[str]
    rule: MatchRule
    rule_id: str
    quality: MatchQuality
    agency_backend: str
    custodian_backend: str
    created_at: str
    updated_at: str
    no_key_counts: _containers.RepeatedCompositeFieldContainer[NoKeyCount]
    def __init__(self, query_id: _Optional[str] = ..., state: _Optional[_Union[QueryState, str]] = ..., mode: _Optional[_Union[_common_pb2.QueryMode, str]] = ..., recipe: _Optional[str] = ..., subject_count: _Optional[int] = ..., keyed_subject_count: _Optional[int] = ..., processed_count: _Optional[int] = ..., match_count: _Optional[int] = ..., false_positive_bound: _Optional[_Union[_common_pb2.FalsePositiveBound, _Mapping]] = ..., epoch_id: _Optional[str] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., timings: _Optional[_Union[PhaseTimings, _Mapping]] = ..., case_id: _Optional[str] = ..., waiting_reason: _Optional[str] = ..., attempts: _Optional[int] = ..., recipes: _Optional[_Iterable[str]] = ..., rule: _Optional[_Union[MatchRule, _Mapping]] = ..., rule_id: _Optional[str] = ..., quality: _Optional[_Union[MatchQuality, _Mapping]] = ..., agency_backend: _Optional[str] = ..., custodian_backend: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., no_key_counts: _Optional[_Iterable[_Union[NoKeyCount, _Mapping]]] = ...) -> None: ...

class NoKeyCount(_message.Message):
    __slots__ = ("recipe", "reason", "count")
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    recipe: str
    reason: str
    count: int
    def __init__(self, recipe: _Optional[str] = ..., reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class MatchQuality(_message.Message):
    __slots__ = ("expected_false_matches", "cryptographic_bound", "semantic_expected", "semantic_rate", "measured", "source", "semantic_rate_upper")
    EXPECTED_FALSE_MATCHES_FIELD_NUMBER: _ClassVar[int]
    CRYPTOGRAPHIC_BOUND_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_RATE_FIELD_NUMBER: _ClassVar[int]
    MEASURED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_RATE_UPPER_FIELD_NUMBER: _ClassVar[int]
    expected_false_matches: float
    cryptographic_bound: float
    semantic_expected: float
    semantic_rate: float
    measured: bool
    source: str
    semantic_rate_upper: float
    def __init__(self, expected_false_matches: _Optional[float] = ..., cryptographic_bound: _Optional[float] = ..., semantic_expected: _Optional[float] = ..., semantic_rate: _Optional[float] = ..., measured: bool = ..., source: _Optional[str] = ..., semantic_rate_upper: _Optional[float] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("recipe", "subject", "matched_recipes")
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MATCHED_RECIPES_FIELD_NUMBER: _ClassVar[int]
    recipe: str
    subject: Subject
    matched_recipes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, recipe: _Optional[str] = ..., subject: _Optional[_Union[Subject, _Mapping]] = ..., matched_recipes: _Optional[_Iterable[str]] = ...) -> None: ...
