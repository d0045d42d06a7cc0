"""Retrying a query when the custodian is down or too slow; the one owner of ``tenacity``.

Only :class:`~psi_core.errors.UnreachableError` (gRPC UNAVAILABLE or DEADLINE_EXCEEDED)
is retried: a refusal or an answer that cannot be right would fail the same way again.
The runner keeps the query's blinding scalar between attempts, so an attempt after one
the custodian had answered in full is a replay it does not charge again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from psi_core.errors import InvalidInputError, UnreachableError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a query is tried.

    Waits grow threefold from ``first_wait`` up to ``max_wait`` seconds: with the
    defaults, 5 attempts spread over about 9 minutes of waiting (20, 60, 180, 300 s).
    """

    attempts: int = 5
    first_wait: float = 20.0
    max_wait: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidInputError("a query needs at least one attempt")
        if not 0 <= self.first_wait <= self.max_wait:
            raise InvalidInputError("retry waits must satisfy 0 <= first wait <= max wait")


def retry_unreachable(
    policy: RetryPolicy,
    attempt: Callable[[int], T],
    *,
    waiting: Callable[[int, UnreachableError, float], None],
    sleep: Callable[[float], None],
) -> T:
    """``attempt(number)`` (numbered from 1) until it returns, raises anything but
    UnreachableError, or has been tried ``policy.attempts`` times (then its last error is
    raised). Before each wait, ``waiting(failed_attempt, error, seconds)`` says why;
    ``sleep(seconds)`` waits and may raise to abandon the retries (a stopping service)."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        seconds = state.next_action.sleep if state.next_action else 0.0
        assert isinstance(error, UnreachableError)
        waiting(state.attempt_number, error, seconds)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=tenacity.wait_exponential(
            multiplier=policy.first_wait, exp_base=3, max=policy.max_wait
        ),
        retry=tenacity.retry_if_exception_type(UnreachableError),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    for trial in retrying:
        with trial:
            return attempt(trial.retry_state.attempt_number)
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
