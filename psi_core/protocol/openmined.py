"""Our small API over openmined-psi: the only module that imports it.

openmined-psi does the heavy curve work (hash-to-curve, scalar multiplication) in C++
and releases the GIL, but it is not a hardened server library: one ``server`` object
must never be used by two threads at once (that aborts the process), it trusts message
fields it should not, and it reports every failure as a bare ``RuntimeError``. So:

* every object here is owned by one thread; callers that serve many threads keep one per
  thread (``ThreadLocalCipher``);
* every input is validated before the call (points via ``psi_core.protocol.curve``, sizes and
  parameters here);
* library errors are turned into our own (``psi_core.errors``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import private_set_intersection.python as _psi

from psi_core.errors import MalformedMessageError, PreconditionError
from psi_core.protocol.curve import check_compressed_points, is_valid_scalar

#: protobuf refuses to parse or build messages of 2 GiB or more.
PROTOBUF_MESSAGE_LIMIT = 2**31 - 1
#: The library's GCS hash range (see :func:`classic_hash_range`) is a signed 64-bit integer.
_INT64_MAX = 2**63 - 1
#: The library picks its Golomb parameter from 1 - keys/hash_range in double precision:
#: from 2**53 hash values per key on, that is 1.0 and the encoding breaks (a C++ length
#: error). 2**52 leaves a margin.
_MAX_RANGE_PER_KEY = 2**52
#: Bits per key beyond log2(hash_range / keys) that a Golomb-coded set can take (see
#: :func:`classic_setup_size_bound`); 4.34 is proven there, 4.5 leaves a margin.
_GCS_BITS_PER_KEY = 4.5
#: Protobuf framing of a ServerSetup around its GCS bits: three fields and the nested
#: message's tag and length, each at most 11 bytes.
_SETUP_FRAMING_BYTES = 64


def _check_secret(secret: bytes) -> bytes:
    if not is_valid_scalar(secret):
        raise ValueError("an epoch key must be 32 bytes encoding a scalar in [1, n-1]")
    return bytes(secret)


class KeyCipher:
    """Applies the custodian's epoch key b. One instance per thread, never shared."""

    def __init__(self, secret: bytes, *, reveal_intersection: bool = True) -> None:
        self._reveal = reveal_intersection
        self._server = _psi.server.CreateFromKey(_check_secret(secret), reveal_intersection)

    def encrypt_keys(self, keys: Sequence[str]) -> list[bytes]:
        """b·H(y) for every key string, as compressed points, sorted (the library sorts RAW)."""
        if not keys:
            return []
        setup = self._server.CreateSetupMessage(1e-9, 1, list(keys), _psi.DataStructure.RAW)
        return list(setup.raw.encrypted_elements)

    def reencrypt(self, points: Sequence[bytes]) -> list[bytes]:
        """b·P for every blinded point P (validated here first).

        With ``reveal_intersection=True`` the answer is in request order; with False the
        library returns it sorted, which is what cardinality mode relies on.
        """
        check_compressed_points(points)
        request = _psi.Request()
        request.reveal_intersection = self._reveal
        request.encrypted_elements.extend(points)
        try:
            response = self._server.ProcessRequest(request)
        except RuntimeError as exc:
            raise MalformedMessageError(
                "the blinded points were rejected by the curve library"
            ) from exc
        return list(response.encrypted_elements)


class ThreadLocalCipher:
    """A KeyCipher per (thread, reveal mode), created on first use in each thread."""

    def __init__(self, secret: bytes) -> None:
        self._secret = _check_secret(secret)
        self._local = threading.local()

    def get(self, *, reveal_intersection: bool) -> KeyCipher:
        ciphers: dict[bool, KeyCipher] | None = getattr(self._local, "ciphers", None)
        if ciphers is None:
            ciphers = self._local.ciphers = {}
        cipher = ciphers.get(reveal_intersection)
        if cipher is None:
            cipher = ciphers[reveal_intersection] = KeyCipher(
                self._secret, reveal_intersection=reveal_intersection
            )
        return cipher


class Blinder:
    """The agency's per-query blinding key a: fresh and random, or a stored one (32 bytes,
    from :attr:`scalar`) when the same query is run again. One instance per query."""

    def __init__(self, scalar: bytes | None = None) -> None:
        if scalar is None:
            self._client = _psi.client.CreateWithNewKey(True)
            return
        if not is_valid_scalar(scalar):
            raise ValueError("a blinding key must be 32 bytes encoding a scalar in [1, n-1]")
        self._client = _psi.client.CreateFromKey(bytes(scalar), True)

    @property
    def scalar(self) -> bytes:
        """The 32-byte big-endian scalar a; needed to unblind. Never leaves the agency."""
        return bytes(self._client.GetPrivateKeyBytes())

    def blind(self, keys: Sequence[str]) -> list[bytes]:
        """a·H(x) for every key string, in input order, as compressed points."""
        if not keys:
            return []
        return list(self._client.CreateRequest(list(keys)).encrypted_elements)


def classic_hash_range(key_count: int, fpr: float, num_client_inputs: int) -> float:
    """The GCS hash range openmined-psi 2.0.6 uses: max(keys, client inputs) · client
    inputs / fpr (measured against the library; it truncates to an integer)."""
    clients = max(num_client_inputs, 1)
    return max(key_count, clients) * clients / fpr


def classic_setup_size_bound(key_count: int, fpr: float, num_client_inputs: int) -> int:
    """An upper bound, in bytes, on the serialized ServerSetup (GCS) that openmined-psi
    builds from ``key_count`` key strings (duplicates included), computed before any work.

    Raises :class:`PreconditionError` where the library cannot build it: the hash range R
    (:func:`classic_hash_range`) beyond a signed 64-bit integer, or more than 2**52 hash
    values per key (its Golomb parameter breaks down in double precision).

    Why it bounds: the library sorts the n hashes, drops repeats and writes each gap d as
    ``d >> div`` zero bits, a one bit and ``div`` remainder bits, with ``div =
    max(0, round(-log2(-log2(1 - 1/a))))`` for a = (largest hash + 1) / n. The quotients
    sum to at most (largest hash) >> div. With -ln(1-p) between p and p/(1-p): when div is
    0, a < 2.59, so the quotients sum to under 2.59·n; when div > 0, 2**div ≥ 0.30·a, so
    they sum to under 3.34·n; and div ≤ log2(a) ≤ log2(R/n). In all, at most
    n·(4.34 + log2(R/n)) bits, a bound that grows with n, plus the protobuf framing.
    """
    hash_range = classic_hash_range(key_count, fpr, num_client_inputs)
    if hash_range >= _INT64_MAX:
        raise PreconditionError(
            f"the classic openmined-psi setup cannot be built: its GCS hash range "
            f"(max(keys, client inputs) x client inputs / fpr = {hash_range:.3g}) exceeds a "
            f"64-bit integer; use the Evaluate API with the encrypted index, or a larger fpr "
            f"/ fewer inputs"
        )
    if key_count == 0:
        return _SETUP_FRAMING_BYTES
    per_key = hash_range / key_count
    if per_key >= _MAX_RANGE_PER_KEY:
        raise PreconditionError(
            f"the classic openmined-psi setup cannot be built: {per_key:.3g} hash values per "
            f"key is beyond what the library's GCS encoding handles (2^52); ask for a larger "
            f"fpr or fewer client inputs"
        )
    bits = key_count * (_GCS_BITS_PER_KEY + math.log2(max(per_key, 1.0)))
    return math.ceil(bits / 8) + _SETUP_FRAMING_BYTES


def classic_setup(secret: bytes, keys: Sequence[str], fpr: float, num_client_inputs: int) -> bytes:
    """The library's own serialized ServerSetup (GCS) over ``keys``, for stock clients."""
    if not 0.0 < fpr < 1.0 or not math.isfinite(fpr):
        raise MalformedMessageError("fpr must be a number strictly between 0 and 1")
    if num_client_inputs < 1:
        raise MalformedMessageError("num_client_inputs must be at least 1")
    if classic_setup_size_bound(len(keys), fpr, num_client_inputs) >= PROTOBUF_MESSAGE_LIMIT:
        raise PreconditionError(
            "the classic openmined-psi setup would reach protobuf's 2 GiB message limit; "
            "use the Evaluate API with the encrypted index"
        )
    server = _psi.server.CreateFromKey(_check_secret(secret), True)
    setup = server.CreateSetupMessage(fpr, num_client_inputs, list(keys), _psi.DataStructure.GCS)
    return setup.SerializeToString()


def parse_classic_request(data: bytes, *, max_points: int) -> list[bytes]:
    """Validate a serialized openmined-psi Request from the wire; return its points.

    The library trusts these fields, so we parse with protobuf ourselves and check the
    reveal flag, the count and every point before anything reaches C++.
    """
    request = _psi.Request()
    try:
        request.ParseFromString(data)
    except Exception as exc:  # protobuf raises its DecodeError or others on garbage
        raise MalformedMessageError("the classic request is not a valid psi.Request") from exc
    if not request.reveal_intersection:
        raise MalformedMessageError(
            "classic requests must set reveal_intersection; cardinality-only classic PSI "
            "is not offered (use Evaluate with QUERY_MODE_CARDINALITY)"
        )
    points = list(request.encrypted_elements)
    if not points:
        raise MalformedMessageError("the classic request holds no points")
    if len(points) > max_points:
        raise MalformedMessageError(
            f"the classic request holds {len(points)} points; at most {max_points} are accepted"
        )
    check_compressed_points(points)
    return points


def classic_response(points: Sequence[bytes], reencrypted: Sequence[bytes]) -> bytes:
    """Serialize the library's own Response for ``reencrypted`` (b·P in request order)."""
    if len(points) != len(reencrypted):
        raise RuntimeError("re-encryption changed the number of points")
    response = _psi.Response()
    response.encrypted_elements.extend(reencrypted)
    return response.SerializeToString()
