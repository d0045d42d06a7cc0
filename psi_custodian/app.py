"""Assemble a running custodian service from a state directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc

from psi_core.index import EncryptedIndex
from psi_core.policy import (
    AuditLog,
    AuthorizationLedger,
    TlsMaterial,
    TrustedAuthorities,
    peer_identity_from_cert_pem,
)
from psi_custodian.policy import AuthorizationPolicy
from psi_custodian.service import CustodianServicer
from psi_custodian.state import CustodianState
from psi_proto.v1 import custodian_pb2, custodian_pb2_grpc
from psi_rpc.server import (
    RunningServer,
    create_server,
    peer_certificate_pem,
    refuse_plaintext_off_loopback,
)

SERVICE_NAME = custodian_pb2.DESCRIPTOR.services_by_name["Custodian"].full_name


def peer_agency_id(context: grpc.ServicerContext) -> str | None:
    """The agency id in the caller's mTLS certificate; None on a plaintext connection."""
    pem = peer_certificate_pem(context)
    return peer_identity_from_cert_pem(pem) if pem else None


def start_custodian(
    state_dir: Path,
    address: str,
    *,
    tls: TlsMaterial | None,
    trusted_authorities: Sequence[Path],
    max_workers: int = 16,
) -> RunningServer:
    """Load the state (epoch key, verified index, ledger, audit log) and start serving."""
    refuse_plaintext_off_loopback(address, tls, "serve")
    state = CustodianState(state_dir)
    config = state.config()
    epoch = state.epoch()
    index = EncryptedIndex.open(state.index_dir(epoch.epoch_id))
    trusted = TrustedAuthorities.load(list(trusted_authorities))
    ledger = AuthorizationLedger(state.database)
    audit = AuditLog(state.database)
    try:
        servicer = CustodianServicer(
            config=config,
            epoch=epoch,
            index=index,
            policy=AuthorizationPolicy(
                custodian_id=config.custodian_id, trusted=trusted, ledger=ledger
            ),
            audit=audit,
            peer_identity=peer_agency_id,
        )
        return create_server(
            address,
            lambda server: custodian_pb2_grpc.add_CustodianServicer_to_server(servicer, server),
            [SERVICE_NAME],
            tls=tls,
            max_workers=max_workers,
            max_message_bytes=config.limits.max_message_bytes,
            closers=(ledger.close, audit.close),
        )
    except BaseException:
        ledger.close()
        audit.close()
        raise
