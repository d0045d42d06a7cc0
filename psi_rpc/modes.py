"""The one mapping between the wire's QueryMode enum and the mode names used everywhere else."""

from __future__ import annotations

from psi_core.errors import InvalidInputError
from psi_proto.v1 import common_pb2

#: Wire enum value -> mode name. Any other value (UNSPECIFIED, unknown) is invalid input.
MODE_NAMES: dict[int, str] = {
    common_pb2.QUERY_MODE_MEMBERSHIP: "membership",
    common_pb2.QUERY_MODE_CARDINALITY: "cardinality",
}
#: Mode name -> wire enum value.
MODE_ENUMS: dict[str, int] = {name: value for value, name in MODE_NAMES.items()}


def mode_name(value: int) -> str:
    """The mode name of a wire enum value; any other value is refused as invalid input."""
    name = MODE_NAMES.get(value)
    if name is None:
        raise InvalidInputError("mode must be QUERY_MODE_MEMBERSHIP or QUERY_MODE_CARDINALITY")
    return name
