"""Server and channel factories with the same settings on both services.

``create_server`` binds (port 0 picks a free port, read back from the result), registers
health checking and reflection next to the given services, and refuses plaintext
anywhere but loopback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from psi_core.errors import PreconditionError
from psi_core.policy import TlsMaterial, is_loopback
from psi_rpc.calls import CallListener, CallObserver, log_call
from psi_rpc.limits import CallCap, CallCaps

DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class RunningServer:
    """A started server; ``stop`` drains it, then runs ``closers`` (databases, channels)."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    closers: tuple[Callable[[], None], ...] = ()

    def stop(self, grace: float | None = None) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        for close in self.closers:
            close()


def refuse_plaintext_off_loopback(address: str, tls: TlsMaterial | None, verb: str) -> None:
    """Raise PreconditionError when ``tls`` is None and ``address`` is not loopback."""
    if tls is None and not is_loopback(address):
        raise PreconditionError(
            f"refusing to {verb} plaintext on {address}: plaintext is allowed only on a "
            f"loopback address; pass --tls-dir (see `psi pki init`)"
        )


#: HTTP/2 keepalive: a peer that stops acknowledging pings for 20 s is treated as dead, so its
#: calls are cancelled (and, on the custodian, its evaluation slot is released).
_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
]


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Message-size limits and keepalive, the same on servers and channels."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *_KEEPALIVE,
    ]


def create_server(
    address: str,
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
    *,
    tls: TlsMaterial | None,
    require_client_cert: bool = True,
    max_workers: int = 16,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    closers: Sequence[Callable[[], None]] = (),
    call_listeners: Sequence[CallListener] = (),
    call_caps: Sequence[CallCap] | None = None,
) -> RunningServer:
    """Start a server on ``address`` with ``register`` adding the services.

    ``tls=None`` means plaintext, which is accepted only on a loopback address.
    ``closers`` run when the server is stopped. Every finished call is written to the
    access log and passed to each of ``call_listeners`` (the metrics). With ``call_caps``
    (see :mod:`psi_rpc.limits`) each kind of call has its own cap and the pool has a thread
    for every call the caps admit (``max_workers`` is then ignored); a call beyond them all
    is refused at once, never queued behind calls that hold their threads.
    """
    refuse_plaintext_off_loopback(address, tls, "serve")
    interceptors: list[grpc.ServerInterceptor] = [CallObserver([log_call, *call_listeners])]
    concurrent = max_workers * 4
    if call_caps is not None:
        caps = CallCaps(call_caps)
        interceptors.append(caps)
        max_workers = concurrent = caps.threads_needed
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=interceptors,
        options=[*channel_options(max_message_bytes), ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=concurrent,
    )
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        credentials = grpc.ssl_server_credentials(
            [(tls.private_key, tls.cert_chain)],
            root_certificates=tls.root_ca,
            require_client_auth=require_client_cert,
        )
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise PreconditionError(f"cannot listen on {address}: the address is in use or invalid")
    server.start()
    for name in (*service_names, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, port=port, health=health_servicer, closers=tuple(closers))


def create_channel(
    address: str,
    *,
    tls: TlsMaterial | None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    server_name: str | None = None,
    reconnect_backoff_seconds: tuple[float, float] | None = None,
) -> grpc.Channel:
    """A channel to ``address``: mTLS with ``tls``, else plaintext (loopback only).

    ``reconnect_backoff_seconds`` (first, longest) bounds how long the channel waits
    before reconnecting to a peer that was down; gRPC's default grows to 120 s, during
    which every call fails at once even if the peer is back.
    """
    options: list[tuple[str, int | str]] = [*channel_options(max_message_bytes)]
    if reconnect_backoff_seconds is not None:
        first, longest = (max(1, int(s * 1000)) for s in reconnect_backoff_seconds)
        options += [
            ("grpc.initial_reconnect_backoff_ms", first),
            ("grpc.max_reconnect_backoff_ms", max(first, longest)),
        ]
    refuse_plaintext_off_loopback(address, tls, "connect in")
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.root_ca, private_key=tls.private_key, certificate_chain=tls.cert_chain
    )
    return grpc.secure_channel(address, credentials, options=options)


def peer_certificate_pem(context: grpc.ServicerContext) -> bytes | None:
    """The PEM client certificate the peer presented over mTLS, or None on plaintext."""
    values = context.auth_context().get("x509_pem_cert")
    return values[0] if values else None
