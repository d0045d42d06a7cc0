"""Per-method caps on calls served at once, so stalled peers of one kind cannot take every
handler thread.

gRPC's sync server runs each call on a thread of one pool for as long as the call lasts:
a reader that stops reading, or a stream that never sends, holds its thread. With a cap per
kind of call (a group of methods sharing one count) and a pool as large as all the caps
together, every admitted call has a thread, and one call too many of a kind is refused at
once with RESOURCE_EXHAUSTED instead of waiting for a thread behind the stalled ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from psi_rpc.calls import rewrapped

__all__ = ["CallCap", "CallCaps"]


@dataclass(frozen=True)
class CallCap:
    """At most ``limit`` calls at once to the methods whose full names start with one of
    ``prefixes`` ("/package.Service/Method" or "/package.Service/"); ``name`` is what the
    refusal calls them. An empty prefix matches every method no other cap matches."""

    name: str
    limit: int
    prefixes: tuple[str, ...]


class CallCaps(grpc.ServerInterceptor):
    """Counts calls per :class:`CallCap` and refuses one over its limit.

    The count is taken in the handler's own thread and given back when the handler
    returns (for a streaming answer: when its generator ends or is dropped), so it counts
    exactly the threads that calls hold.
    """

    def __init__(self, caps: Sequence[CallCap]) -> None:
        if not any("" in cap.prefixes for cap in caps):
            raise ValueError("one cap must match every other method (prefix '')")
        self._caps = list(caps)
        self._slots = {cap.name: threading.BoundedSemaphore(cap.limit) for cap in caps}

    @property
    def threads_needed(self) -> int:
        """A pool this large has a thread for every call the caps admit."""
        return sum(cap.limit for cap in self._caps)

    def _cap_for(self, method: str) -> CallCap:
        best: tuple[int, CallCap] | None = None
        for cap in self._caps:
            for prefix in cap.prefixes:
                if method.startswith(prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), cap)
        assert best is not None
        return best[1]

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        cap = self._cap_for(handler_call_details.method)
        return _capped(handler, cap, self._slots[cap.name])


def _refusal(cap: CallCap) -> str:
    return (
        f"this service is serving its maximum of {cap.limit} {cap.name} calls at once; retry later"
    )


def _capped(
    handler: grpc.RpcMethodHandler, cap: CallCap, slots: threading.BoundedSemaphore
) -> grpc.RpcMethodHandler:
    def enter(context: grpc.ServicerContext) -> None:
        if not slots.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _refusal(cap))

    def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            enter(context)
            try:
                return behavior(request, context)
            finally:
                slots.release()

        return run

    def streaming(behavior: Callable[..., Any]) -> Callable[..., Iterator[Any]]:
        def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            enter(context)
            try:
                yield from behavior(request, context)
            finally:
                slots.release()

        return run

    return rewrapped(handler, unary, streaming)
