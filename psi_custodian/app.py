"""Assemble a running custodian service from a state directory."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import grpc

from psi_core.index import Clock, EpochRecord, ServedEpochs, utc_now
from psi_core.policy import (
    AuditLog,
    AuthorizationLedger,
    TlsMaterial,
    TrustedAuthorities,
    peer_identity_from_cert_pem,
)
from psi_core.protocol import default_backend, select_backend
from psi_custodian.policy import AuthorizationPolicy
from psi_custodian.service import CustodianServicer
from psi_custodian.state import CustodianLimits, CustodianState
from psi_proto.v1 import custodian_pb2, custodian_pb2_grpc
from psi_rpc.limits import CallCap
from psi_rpc.metrics import MAX_TOKENS, ServiceMetrics, TokenUse
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


def epoch_event(kind: str, record: EpochRecord, **extra: object) -> dict[str, object]:
    """The audit entry for an epoch event: ids and times only, never key material."""
    event: dict[str, object] = {"kind": kind, "epoch_id": record.epoch_id, "state": record.state}
    for name in ("activated_at", "ends_at", "retired_at"):
        value = getattr(record, name)
        if value:
            event[name] = value
    event.update(extra)
    return event


def custodian_call_caps(limits: CustodianLimits) -> list[CallCap]:
    """How many calls of each kind the custodian serves at once (see psi_rpc.limits)."""
    method = f"/{SERVICE_NAME}/"
    return [
        CallCap("FetchIndex", limits.max_concurrent_fetches, (method + "FetchIndex",)),
        CallCap("Evaluate", limits.max_concurrent_evaluate_calls, (method + "Evaluate",)),
        CallCap(
            "classic",
            limits.max_concurrent_classic_calls,
            (method + "GetClassicSetup", method + "ProcessClassicRequest"),
        ),
        CallCap(
            "reflection",
            limits.max_concurrent_reflection_calls,
            ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/"),
        ),
        CallCap("health", limits.max_concurrent_health_calls, ("/grpc.health.v1.Health/",)),
        CallCap("other", limits.max_concurrent_other_calls, ("",)),
    ]


def _token_use(ledger: AuthorizationLedger) -> list[TokenUse]:
    return [
        TokenUse(
            token_id=token_id,
            subjects_used=entry.subjects_used,
            subjects_limit=entry.subjects_used + entry.subjects_left,
            queries_used=entry.queries_used,
            queries_limit=entry.queries_used + entry.queries_left,
        )
        for token_id, entry in ledger.newest_tokens(MAX_TOKENS)
    ]


def start_custodian(
    state_dir: Path,
    address: str,
    *,
    tls: TlsMaterial | None,
    trusted_authorities: Sequence[Path],
    max_workers: int = 16,
    clock: Clock = utc_now,
    metrics: ServiceMetrics | None = None,
    backend: str | None = None,
) -> RunningServer:
    """Load the state (epoch keys, verified indexes, ledger, audit log) and start serving.

    ``clock`` decides when an overlap window ends (tests inject one instead of sleeping).
    ``backend`` is a curve backend name or "auto" (``psi_core.protocol.select_backend``).
    """
    refuse_plaintext_off_loopback(address, tls, "serve")
    state = CustodianState(state_dir)
    config = state.config()
    trusted = TrustedAuthorities.load(list(trusted_authorities))
    ledger = AuthorizationLedger(state.database)
    try:
        audit = AuditLog(state.database, share=ledger)
    except BaseException:
        ledger.close()
        raise
    try:

        def retired(record: EpochRecord) -> None:
            audit.append(epoch_event("epoch_retired", record, by="service"))
            if metrics is not None:
                with contextlib.suppress(KeyError):
                    metrics.index_keys.remove(record.epoch_id)

        curve = select_backend(backend) if backend else default_backend()
        epochs = ServedEpochs(state.registry(clock), on_retired=retired, backend=curve)
        servicer = CustodianServicer(
            config=config,
            epochs=epochs,
            policy=AuthorizationPolicy(
                custodian_id=config.custodian_id, trusted=trusted, ledger=ledger, audit=audit
            ),
            audit=audit,
            peer_identity=peer_agency_id,
            backend=curve,
            metrics=metrics,
        )
        if metrics is not None:
            for served in epochs.refresh():
                metrics.index_keys.labels(served.epoch_id).set(served.index.key_count)
            metrics.report_token_use(lambda: _token_use(ledger))
        return create_server(
            address,
            lambda server: custodian_pb2_grpc.add_CustodianServicer_to_server(servicer, server),
            [SERVICE_NAME],
            tls=tls,
            max_workers=max_workers,
            max_message_bytes=config.limits.max_message_bytes,
            closers=(ledger.close,),
            call_listeners=[metrics.record_call] if metrics is not None else [],
            call_caps=custodian_call_caps(config.limits),
        )
    except BaseException:
        ledger.close()
        audit.close()
        raise
