"""Every finished gRPC call, seen once: its method, final status code and duration.

:class:`CallObserver` is a server interceptor that tells its listeners about each call when
it ends (the metrics count it; the access log writes one line). It sees no request or
response content, so nothing it passes on can carry a subject, a key or a point.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

__all__ = ["CallListener", "CallObserver", "log_call", "rewrapped"]

CallListener = Callable[[str, str, float], None]
access_log = logging.getLogger("psi_rpc.access")


def log_call(method: str, code: str, seconds: float) -> None:
    """The access log: one INFO line a call (WARNING when it did not end OK)."""
    level = logging.INFO if code == "OK" else logging.WARNING
    access_log.log(
        level,
        "call %s ended %s in %.3f s",
        method,
        code,
        seconds,
        extra={"method": method, "code": code, "seconds": round(seconds, 6)},
    )


class CallObserver(grpc.ServerInterceptor):
    """Calls each listener with ``(method, code name, seconds)`` when a call ends."""

    def __init__(self, listeners: Sequence[CallListener]) -> None:
        self._listeners = tuple(listeners)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        record = self._recorder(_method_name(handler_call_details.method))
        return rewrapped(
            handler,
            lambda behaviour: _wrap_unary(behaviour, record),
            lambda behaviour: _wrap_stream(behaviour, record),
        )

    def _recorder(self, method: str) -> Callable[[grpc.ServicerContext, float, bool], None]:
        def record(context: grpc.ServicerContext, started: float, failed: bool) -> None:
            code, seconds = _code_name(context, failed), time.perf_counter() - started
            for listener in self._listeners:
                listener(method, code, seconds)

        return record


Behaviour = Callable[[Any, grpc.ServicerContext], Any]


def rewrapped(
    handler: grpc.RpcMethodHandler,
    unary: Callable[[Behaviour], Behaviour],
    streaming: Callable[[Behaviour], Behaviour],
) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour wrapped: by ``unary`` when the answer is one message,
    by ``streaming`` when it is a stream (the wrapper is then a generator)."""
    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **serializers)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **serializers)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **serializers)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **serializers)


def _method_name(full_method: str) -> str:
    return full_method.rsplit("/", 1)[-1] or full_method


def _code_name(context: grpc.ServicerContext, failed: bool) -> str:
    code = context.code()
    if code is None:
        return "UNKNOWN" if failed else "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    return str(code)


def _wrap_unary(
    behaviour: Callable[[Any, grpc.ServicerContext], Any],
    record: Callable[[grpc.ServicerContext, float, bool], None],
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        failed = True
        try:
            response = behaviour(request, context)
            failed = False
            return response
        finally:
            record(context, started, failed)

    return wrapped


def _wrap_stream(
    behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
    record: Callable[[grpc.ServicerContext, float, bool], None],
) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
    def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started = time.perf_counter()
        failed = True
        try:
            yield from behaviour(request, context)
            failed = False
        finally:
            record(context, started, failed)

    return wrapped
