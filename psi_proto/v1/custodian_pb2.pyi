from psi_proto.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEGMENT_KIND_UNSPECIFIED: _ClassVar[SegmentKind]
    SEGMENT_KIND_BASE: _ClassVar[SegmentKind]
    SEGMENT_KIND_ADD: _ClassVar[SegmentKind]
    SEGMENT_KIND_REMOVE: _ClassVar[SegmentKind]
SEGMENT_KIND_UNSPECIFIED: SegmentKind
SEGMENT_KIND_BASE: SegmentKind
SEGMENT_KIND_ADD: SegmentKind
SEGMENT_KIND_REMOVE: SegmentKind

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PolicyLimits(_message.Message):
    __slots__ = ("max_subjects_per_query", "max_points_per_chunk", "max_message_bytes", "max_concurrent_evaluations", "max_replays_per_token", "max_classic_setups_per_token")
    MAX_SUBJECTS_PER_QUERY_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_PER_CHUNK_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLAYS_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MAX_CLASSIC_SETUPS_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    max_subjects_per_query: int
    max_points_per_chunk: int
    max_message_bytes: int
    max_concurrent_evaluations: int
    max_replays_per_token: int
    max_classic_setups_per_token: int
    def __init__(self, max_subjects_per_query: _Optional[int] = ..., max_points_per_chunk: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_concurrent_evaluations: _Optional[int] = ..., max_replays_per_token: _Optional[int] = ..., max_classic_setups_per_token: _Optional[int] = ...) -> None: ...

class CustodianInfo(_message.Message):
    __slots__ = ("custodian_id", "epoch_id", "record_count", "key_count", "recipes", "index_sha256", "index_size_bytes", "limits", "false_positive_bound", "backend", "suite", "classic_setup_available", "epochs")
    CUSTODIAN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECIPES_FIELD_NUMBER: _ClassVar[int]
    INDEX_SHA256_FIELD_NUMBER: _ClassVar[int]
    INDEX_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    FALSE_POSITIVE_BOUND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SUITE_FIELD_NUMBER: _ClassVar[int]
    CLASSIC_SETUP_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    custodian_id: str
    epoch_id: str
    record_count: int
    key_count: int
    recipes: _containers.RepeatedScalarFieldContainer[str]
    index_sha256: bytes
    index_size_bytes: int
    limits: PolicyLimits
    false_positive_bound: _common_pb2.FalsePositiveBound
    backend: str
    suite: str
    classic_setup_available: bool
    epochs: _containers.RepeatedCompositeFieldContainer[EpochInfo]
    def __init__(self, custodian_id: _Optional[str] = ..., epoch_id: _Optional[str] = ..., record_count: _Optional[int] = ..., key_count: _Optional[int] = ..., recipes: _Optional[_Iterable[str]] = ..., index_sha256: _Optional[bytes] = ..., index_size_bytes: _Optional[int] = ..., limits: _Optional[_Union[PolicyLimits, _Mapping]] = ..., false_positive_bound: _Optional[_Union[_common_pb2.FalsePositiveBound, _Mapping]] = ..., backend: _Optional[str] = ..., suite: _Optional[str] = ..., classic_setup_available: bool = ..., epochs: _Optional[_Iterable[_Union[EpochInfo, _Mapping]]] = ...) -> None: ...

class IndexSegment(_message.Message):
    __slots__ = ("seq", "kind", "key_count", "size_bytes", "sha256", "record_count")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: SegmentKind
    key_count: int
    size_bytes: int
    sha256: bytes
    record_count: int
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[_Union[SegmentKind, str]] = ..., key_count: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[bytes] = ..., record_count: _Optional[int] = ...) -> None: ...

class EpochInfo(_message.Message):
    __slots__ = ("epoch_id", "current", "ends_at_unix_seconds", "recipes", "record_count", "key_count", "base", "segments")
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_UNIX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RECIPES_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    epoch_id: str
    current: bool
    ends_at_unix_seconds: int
    recipes: _containers.RepeatedScalarFieldContainer[str]
    record_count: int
    key_count: int
    base: IndexSegment
    segments: _containers.RepeatedCompositeFieldContainer[IndexSegment]
    def __init__(self, epoch_id: _Optional[str] = ..., current: bool = ..., ends_at_unix_seconds: _Optional[int] = ..., recipes: _Optional[_Iterable[str]] = ..., record_count: _Optional[int] = ..., key_count: _Optional[int] = ..., base: _Optional[_Union[IndexSegment, _Mapping]] = ..., segments: _Optional[_Iterable[_Union[IndexSegment, _Mapping]]] = ...) -> None: ...

class FetchIndexRequest(_message.Message):
    __slots__ = ("epoch_id", "offset", "segment")
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    epoch_id: str
    offset: int
    segment: int
    def __init__(self, epoch_id: _Optional[str] = ..., offset: _Optional[int] = ..., segment: _Optional[int] = ...) -> None: ...

class IndexChunk(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class EvaluateHeader(_message.Message):
    __slots__ = ("authorization", "mode", "recipe", "epoch_id", "point_count", "replay_of_sha256", "chunk_sha256", "recipe_keys", "subject_count", "suite")
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    POINT_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPLAY_OF_SHA256_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SHA256_FIELD_NUMBER: _ClassVar[int]
    RECIPE_KEYS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUITE_FIELD_NUMBER: _ClassVar[int]
    authorization: bytes
    mode: _common_pb2.QueryMode
    recipe: str
    epoch_id: str
    point_count: int
    replay_of_sha256: bytes
    chunk_sha256: _containers.RepeatedScalarFieldContainer[bytes]
    recipe_keys: _containers.RepeatedCompositeFieldContainer[RecipeKeyCount]
    subject_count: int
    suite: str
    def __init__(self, authorization: _Optional[bytes] = ..., mode: _Optional[_Union[_common_pb2.QueryMode, str]] = ..., recipe: _Optional[str] = ..., epoch_id: _Optional[str] = ..., point_count: _Optional[int] = ..., replay_of_sha256: _Optional[bytes] = ..., chunk_sha256: _Optional[_Iterable[bytes]] = ..., recipe_keys: _Optional[_Iterable[_Union[RecipeKeyCount, _Mapping]]] = ..., subject_count: _Optional[int] = ..., suite: _Optional[str] = ...) -> None: ...

class RecipeKeyCount(_message.Message):
    __slots__ = ("recipe", "key_count")
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    recipe: str
    key_count: int
    def __init__(self, recipe: _Optional[str] = ..., key_count: _Optional[int] = ...) -> None: ...

class PointChunk(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, points: _Optional[_Iterable[bytes]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: EvaluateHeader
    chunk: PointChunk
    def __init__(self, header: _Optional[_Union[EvaluateHeader, _Mapping]] = ..., chunk: _Optional[_Union[PointChunk, _Mapping]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, points: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ClassicSetupRequest(_message.Message):
    __slots__ = ("authorization", "fpr", "num_client_inputs", "recipe", "epoch_id")
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    FPR_FIELD_NUMBER: _ClassVar[int]
    NUM_CLIENT_INPUTS_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    authorization: bytes
    fpr: float
    num_client_inputs: int
    recipe: str
    epoch_id: str
    def __init__(self, authorization: _Optional[bytes] = ..., fpr: _Optional[float] = ..., num_client_inputs: _Optional[int] = ..., recipe: _Optional[str] = ..., epoch_id: _Optional[str] = ...) -> None: ...

class ClassicSetup(_message.Message):
    __slots__ = ("server_setup", "epoch_id")
    SERVER_SETUP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    server_setup: bytes
    epoch_id: str
    def __init__(self, server_setup: _Optional[bytes] = ..., epoch_id: _Optional[str] = ...) -> None: ...

class ClassicRequest(_message.Message):
    __slots__ = ("authorization", "request", "epoch_id")
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    EPOCH_ID_FIELD_NUMBER: _ClassVar[int]
    authorization: bytes
    request: bytes
    epoch_id: str
    def __init__(self, authorization: _Optional[bytes] = ..., request: _Optional[bytes] = ..., epoch_id: _Optional[str] = ...) -> None: ...

class ClassicResponse(_message.Message):
    __slots__ = ("response",)
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    response: bytes
    def __init__(self, response: _Optional[bytes] = ...) -> None: ...
