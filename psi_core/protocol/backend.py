"""Curve backends: who does the P-256 work of the protocol, behind one small interface.

Every phase of the protocol is "hash to the curve, then multiply" or "multiply a point":

================  ==========================================  =====================
who               computes                                    method
================  ==========================================  =====================
custodian build   x(b·H(k)) for its keys (fingerprints)       ``hash_to_x``
agency blind      a·H(x), compressed, sent to the custodian   ``hash_to_points``
custodian answer  b·P for each blinded P, compressed          ``multiply``
agency unblind    x(a⁻¹·Q) for each answer Q                  ``multiply_x``
================  ==========================================  =====================

Usage (the whole interface)::

    backend = select_backend("auto")          # or get_backend("openmined" | "crypto_mb")
                                              # or default_backend() (PSI_CURVE_BACKEND)
    key = backend.key(scalar)                 # 32-byte big-endian scalar in [1, n-1]
    key.hash_to_points(["recipe|key", ...])   # list of 33-byte compressed points
    key.hash_to_x(keys)                       # bytes: 32-byte x-coordinates, concatenated
    key.multiply(points)                      # list of 33-byte compressed points
    key.multiply_x(points)                    # bytes: 32-byte x-coordinates, concatenated

Results are in input order and identical, byte for byte, across backends (the tests
check it): H is openmined-psi's hash-to-curve, so an index built by one backend is
queried through another. ``multiply`` and ``multiply_x`` validate every point and raise
``MalformedMessageError`` (nothing is computed) if any is not a compressed P-256 point.
A key object may be shared by any number of threads; in a process pool each worker
process makes its own (pass the backend *name* and the scalar, never the object).

Backends:

* ``openmined`` — the reference: openmined-psi (C++, one point at a time) for the hash
  and full-point products, ``cryptography``'s ECDH for the x-only product.
* ``crypto_mb`` — Intel's multi-buffer library with AVX-512 IFMA (``crypto_mb``): points
  multiplied eight per call, the square roots of decompression and hash-to-curve sixteen
  per call; gmpy2 finds the hashed x-coordinates (``p256``). Needs the ``crypto-mb`` extra
  and a CPU with the ``avx512ifma`` flag.

``SUITE`` names the group and hash; both are fixed for P-256 here. The custodian
announces its suite (``GetInfo``) and the agency states the one it blinded with
(``EvaluateHeader.suite``), so a second suite could be added without ambiguity.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from psi_core.errors import PreconditionError
from psi_core.protocol import crypto_mb, p256
from psi_core.protocol.curve import XMultiplier
from psi_core.protocol.openmined import Blinder, KeyCipher

#: P-256, hash-to-curve by SHA-256 try-and-increment (openmined-psi's H).
SUITE = "P256_SHA256_TAI"
OPENMINED = "openmined"
CRYPTO_MB = "crypto_mb"
AUTO = "auto"
BACKEND_NAMES = (OPENMINED, CRYPTO_MB)
BACKEND_CHOICES = (AUTO, *BACKEND_NAMES)
#: Names the backend used wherever a caller names none (library defaults, harnesses).
ENV_DEFAULT_BACKEND = "PSI_CURVE_BACKEND"

log = logging.getLogger(__name__)


class ScalarKey(Protocol):
    """A scalar s bound to a backend; see the module docstring for each method."""

    def hash_to_points(self, keys: Sequence[str]) -> list[bytes]: ...

    def hash_to_x(self, keys: Sequence[str]) -> bytes: ...

    def multiply(self, points: Sequence[bytes]) -> list[bytes]: ...

    def multiply_x(self, points: Sequence[bytes]) -> bytes: ...


class CurveBackend(Protocol):
    """A named implementation of the suite; ``key`` binds a scalar (ValueError if invalid)."""

    name: str
    suite: str

    def key(self, scalar: bytes) -> ScalarKey: ...


class BackendUnavailableError(PreconditionError):
    """The backend asked for cannot run on this machine; the message says why."""


# -- openmined (reference) ---------------------------------------------------------------


class _OpenminedKey:
    """openmined-psi objects must never be shared by threads: one of each per thread."""

    def __init__(self, scalar: bytes) -> None:
        self._x = XMultiplier(scalar)
        self._scalar = bytes(scalar)
        self._local = threading.local()

    def _blinder(self) -> Blinder:
        blinder: Blinder | None = getattr(self._local, "blinder", None)
        if blinder is None:
            blinder = self._local.blinder = Blinder(self._scalar)
        return blinder

    def _cipher(self) -> KeyCipher:
        cipher: KeyCipher | None = getattr(self._local, "cipher", None)
        if cipher is None:
            cipher = self._local.cipher = KeyCipher(self._scalar, reveal_intersection=True)
        return cipher

    def hash_to_points(self, keys: Sequence[str]) -> list[bytes]:
        return self._blinder().blind(keys)

    def hash_to_x(self, keys: Sequence[str]) -> bytes:
        return b"".join(point[1:] for point in self.hash_to_points(keys))

    def multiply(self, points: Sequence[bytes]) -> list[bytes]:
        if not points:
            return []
        return self._cipher().reencrypt(points)

    def multiply_x(self, points: Sequence[bytes]) -> bytes:
        return self._x.multiply_x(points)


class OpenminedBackend:
    name = OPENMINED
    suite = SUITE

    def key(self, scalar: bytes) -> ScalarKey:
        return _OpenminedKey(scalar)


# -- crypto_mb ---------------------------------------------------------------------------


class _CryptoMbKey:
    def __init__(self, scalar: bytes) -> None:
        self._lanes = crypto_mb.LaneMultiplier(scalar)

    def hash_to_points(self, keys: Sequence[str]) -> list[bytes]:
        xs, ys = p256.hash_to_curve_many(keys, crypto_mb.curve_roots)
        return self._points(xs, ys)

    def hash_to_x(self, keys: Sequence[str]) -> bytes:
        xs, ys = p256.hash_to_curve_many(keys, crypto_mb.curve_roots)
        return self._lanes.multiply(xs, ys, want_y=False)[0].tobytes()

    def multiply(self, points: Sequence[bytes]) -> list[bytes]:
        xs, ys = p256.decompress(points, crypto_mb.curve_roots)
        return self._points(xs, ys)

    def multiply_x(self, points: Sequence[bytes]) -> bytes:
        xs, ys = p256.decompress(points, crypto_mb.curve_roots)
        return self._lanes.multiply(xs, ys, want_y=False)[0].tobytes()

    def _points(self, xs: p256.Coordinates, ys: p256.Coordinates) -> list[bytes]:
        out_x, out_y = self._lanes.multiply(xs, ys)
        return p256.compress(out_x, (out_y[:, -1] & 1).astype(np.bool_))


class CryptoMbBackend:
    name = CRYPTO_MB
    suite = SUITE

    def __init__(self) -> None:
        reason = crypto_mb_unavailable_reason()
        if reason is not None:
            raise BackendUnavailableError(f"the crypto_mb backend cannot run here: {reason}")

    def key(self, scalar: bytes) -> ScalarKey:
        return _CryptoMbKey(scalar)


# -- choosing ----------------------------------------------------------------------------


def crypto_mb_unavailable_reason() -> str | None:
    """None when the crypto_mb backend can run in this process, else why not."""
    if not p256.AVAILABLE:
        return "gmpy2 is not installed (pip install '.[crypto-mb]')"
    return crypto_mb.unavailable_reason()


_selected: dict[str, CurveBackend] = {}
_select_lock = threading.Lock()


def get_backend(name: str) -> CurveBackend:
    """The backend called ``name``; BackendUnavailableError if it cannot run here."""
    if name == OPENMINED:
        return OpenminedBackend()
    if name == CRYPTO_MB:
        return CryptoMbBackend()
    raise ValueError(f"unknown curve backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")


def default_backend() -> CurveBackend:
    """The backend for callers that name none: ``PSI_CURVE_BACKEND`` (a name or "auto")
    when set, else the openmined reference. The command-line tools name one (``--backend``,
    default auto)."""
    return select_backend(os.environ.get(ENV_DEFAULT_BACKEND) or OPENMINED)


def select_backend(choice: str = AUTO) -> CurveBackend:
    """``choice`` by name, or for ``auto`` crypto_mb when it can run, else openmined.

    ``auto`` logs one WARNING line (once per process) saying why it fell back.
    """
    if choice != AUTO:
        return get_backend(choice)
    with _select_lock:
        chosen = _selected.get(AUTO)
        if chosen is None:
            reason = crypto_mb_unavailable_reason()
            if reason is None:
                chosen = CryptoMbBackend()
            else:
                log.warning("curve backend: using openmined, not crypto_mb: %s", reason)
                chosen = OpenminedBackend()
            _selected[AUTO] = chosen
        return chosen
