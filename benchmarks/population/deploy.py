"""The few project entry points the harness needs, imported in one place.

Everything here is the project's public API as a deployment uses it: the development PKI
and authority, the two services, and the index builder.
"""

from __future__ import annotations

from psi_agency.app import start_agency
from psi_agency.client import AgencyClient
from psi_core.index import EncryptedIndex, build_index, iter_index_keys, process_pool
from psi_core.policy import load_tls_material
from psi_core.protocol import BlindedQuery, Reencryptor
from psi_core.protocol.openmined import PROTOBUF_MESSAGE_LIMIT
from psi_custodian.app import start_custodian
from psi_custodian.state import CustodianLimits, CustodianState
from psi_rpc.modes import MODE_ENUMS
from psi_rpc.server import create_channel
from psi_tools.authority import init_authority, issue_authorization
from psi_tools.dev_pki import init_pki

__all__ = [
    "MODE_ENUMS",
    "PROTOBUF_MESSAGE_LIMIT",
    "AgencyClient",
    "BlindedQuery",
    "CustodianLimits",
    "CustodianState",
    "EncryptedIndex",
    "Reencryptor",
    "build_index",
    "create_channel",
    "init_authority",
    "init_pki",
    "issue_authorization",
    "iter_index_keys",
    "load_tls_material",
    "process_pool",
    "start_agency",
    "start_custodian",
]
