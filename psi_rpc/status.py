"""The one place where our errors become gRPC status codes, and back.

Servicer methods are wrapped with ``grpc_errors``: a ``PsiError`` is reported with its
status and message; anything else is logged here and reported as INTERNAL without
detail, so no stack trace, key or point ever reaches a peer.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from psi_core.errors import (
    AuthenticationError,
    BudgetExhaustedError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    PeerError,
    PermissionDeniedError,
    PreconditionError,
    PsiError,
    UnreachableError,
)

log = logging.getLogger(__name__)

_BY_NAME: dict[str, grpc.StatusCode] = {code.name: code for code in grpc.StatusCode}

_ERROR_FOR_CODE: dict[grpc.StatusCode, type[PsiError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: BudgetExhaustedError,
    grpc.StatusCode.FAILED_PRECONDITION: PreconditionError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.DATA_LOSS: IntegrityError,
}

F = TypeVar("F", bound=Callable[..., Any])


def status_code(error: PsiError) -> grpc.StatusCode:
    """The gRPC status for one of our errors."""
    return _BY_NAME.get(error.status, grpc.StatusCode.INTERNAL)


def error_from_rpc(exc: grpc.RpcError, peer: str) -> PsiError:
    """Our error for a failed call to ``peer``, keeping the peer's message."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else ""
    cls = _ERROR_FOR_CODE.get(code, PeerError)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return UnreachableError(
            f"the {peer} is unreachable or did not answer in time ({code.name}: {details})"
        )
    return cls(f"the {peer} refused: {code.name}: {details}")


def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, PsiError):
        context.abort(status_code(exc), str(exc))
    log.exception("unexpected error in a gRPC handler")
    context.abort(grpc.StatusCode.INTERNAL, "internal error; the service log has the details")


def grpc_errors(method: F) -> F:
    """Report PsiErrors raised by a unary or streaming servicer method as gRPC statuses."""

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            _abort(context, exc)

    @functools.wraps(method)
    def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            _abort(context, exc)

    return streaming if inspect.isgeneratorfunction(method) else unary  # type: ignore[return-value]


def _is_abort(exc: BaseException) -> bool:
    """``context.abort`` raises a bare ``Exception()``, which must pass through untouched."""
    return type(exc) is Exception and not exc.args
