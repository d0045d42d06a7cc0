"""P-256 scalar multiplication eight lanes at a time with Intel's ``crypto_mb`` (ctypes).

This is the only module that touches Intel's library. It comes from the ``ipp-crypto``
wheel (``libcrypto_mb.so``), which needs Intel's compiler runtime (``libintlc``,
``libimf``, ``libsvml``, ``libirng`` from ``intel-cmplr-lib-rt``). Both wheels install
their shared objects into ``<prefix>/lib``, which the dynamic loader does not search, and
``LD_LIBRARY_PATH`` is read only when a process starts. So ``load`` finds each file through
the installed packages' own file lists (``importlib.metadata``) and opens the runtime
libraries first with ``RTLD_GLOBAL``: the loader then resolves ``libcrypto_mb``'s
dependencies by their sonames against libraries already loaded.

``PSI_CRYPTO_MB_LIBRARY=/path/to/libcrypto_mb.so`` loads another copy instead (a path that
does not exist simulates a machine without the library).

Which routines: the public ``mbx_nistp256_ecdh_mb8`` returns only the x-coordinate of
k·P, but blinding and evaluation must send whole points (their compressed encoding carries
y's parity). So we call the exported lane routines the public ECDH is built from
(``ifma_tomont52_p256_mb8``, ``ifma_is_on_curve_p256_mb8``, ``ifma_ec_nistp256_mul_point_mb8``,
``get_nistp256_ec_affine_coords_mb8``, ``ifma_frommont52_p256_mb8``), on the layout they
share: a coordinate is five 52-bit limbs, each limb a 64-byte vector holding that limb of
eight points (lanes); a point is X, Y, Z in Montgomery form (R = 2²⁶⁰); a scalar is five
64-bit words, word-major and lane-minor, the last one zero.

Guarantees, since these routines check nothing themselves:

* every point comes from ``p256`` (decompressed and validated, or hashed to the curve) and
  is range-checked again here; the library's own on-curve test must then accept all eight
  lanes, else nothing is returned;
* scalars are in [1, n−1];
* outputs are checked to be field elements;
* on load, a self-test compares the library with ``p256.reference_multiply``; a library
  that disagrees is not used.

The routines are pure functions of caller-owned buffers (only constant tables are shared),
and ctypes releases the GIL during each call: one ``LaneMultiplier`` may be used from any
number of threads at once. Each process loads the library itself (nothing here is pickled).
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import numpy.typing as npt

from psi_core.protocol import p256

ENV_LIBRARY = "PSI_CRYPTO_MB_LIBRARY"
LANES = 8
_LIMBS = 5
_LIMB_BITS = 52
_LIMB_MASK = np.uint64((1 << _LIMB_BITS) - 1)
_WORDS = 4
#: One coordinate: five limbs × eight lanes of uint64.
_COORD_WORDS = _LIMBS * LANES
#: One P256_POINT (X, Y, Z): 960 bytes, a multiple of the 64-byte vector alignment.
_POINT_WORDS = 3 * _COORD_WORDS
_POINT_BYTES = _POINT_WORDS * 8
_ALL_LANES = (1 << LANES) - 1
_RUNTIME_LIBRARIES = ("libintlc.so.5", "libimf.so", "libsvml.so", "libirng.so")
_LIBRARY_FILE = "libcrypto_mb.so.13"
#: Feature bits of mbx_get_cpu_features (crypto_mb/cpu_features.h).
_CPU_AVX512F = 0x00100000
_CPU_AVX512IFMA = 0x100000000
_CPU_AVX512_BY_OS = 0x200000000

Rows = npt.NDArray[np.uint8]


class CryptoMbUnavailable(RuntimeError):
    """The library cannot be used here; the message says why (for one log line)."""


def _package_file(distribution: str, name: str) -> Path:
    try:
        files = metadata.files(distribution) or []
    except metadata.PackageNotFoundError:
        raise CryptoMbUnavailable(
            f"the {distribution} package is not installed (pip install '.[crypto-mb]')"
        ) from None
    for entry in files:
        if entry.name == name:
            return Path(str(entry.locate())).resolve()
    raise CryptoMbUnavailable(f"{name} is not in the installed {distribution} package")


def _cpu_has_ifma() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(
        line.startswith("flags") and "avx512ifma" in line.split() for line in text.splitlines()
    )


def _declare(lib: ctypes.CDLL) -> None:
    """Every routine used, with its C signature (pointers are passed as addresses)."""
    vp = ctypes.c_void_p
    signatures: dict[str, tuple[list[type], type | None]] = {
        "mbx_get_cpu_features": ([], ctypes.c_uint64),
        "mbx_is_crypto_mb_applicable": ([ctypes.c_uint64], ctypes.c_int),
        # void (U64 r[5], const U64 a[5])
        "ifma_tomont52_p256_mb8": ([vp, vp], None),
        "ifma_frommont52_p256_mb8": ([vp, vp], None),
        # __mb_mask (const P256_POINT* p, int use_jproj_coords)
        "ifma_is_on_curve_p256_mb8": ([vp, ctypes.c_int], ctypes.c_uint8),
        # void (P256_POINT* r, const P256_POINT* p, const U64 scalar[5])
        "ifma_ec_nistp256_mul_point_mb8": ([vp, vp, vp], None),
        # void (U64 x[5] or NULL, U64 y[5] or NULL, const P256_POINT* p)
        "get_nistp256_ec_affine_coords_mb8": ([vp, vp, vp], None),
    }
    for name, (argtypes, restype) in signatures.items():
        try:
            function = getattr(lib, name)
        except AttributeError:
            raise CryptoMbUnavailable(f"the library does not export {name}") from None
        function.argtypes = argtypes
        function.restype = restype


def _aligned(words: int) -> npt.NDArray[np.uint64]:
    """A zeroed uint64 array whose data starts on a 64-byte boundary (vector loads)."""
    raw = np.zeros(words + 8, dtype=np.uint64)
    start = (-raw.ctypes.data % 64) // 8
    return raw[start : start + words]


def rows_to_limbs(rows: Rows) -> npt.NDArray[np.uint64]:
    """Big-endian 32-byte rows -> (n, 5) little-endian 52-bit limbs."""
    words = np.ascontiguousarray(rows[:, ::-1]).view("<u8").astype(np.uint64)
    w0, w1, w2, w3 = words[:, 0], words[:, 1], words[:, 2], words[:, 3]
    limbs = np.empty((rows.shape[0], _LIMBS), dtype=np.uint64)
    limbs[:, 0] = w0 & _LIMB_MASK
    limbs[:, 1] = ((w0 >> np.uint64(52)) | (w1 << np.uint64(12))) & _LIMB_MASK
    limbs[:, 2] = ((w1 >> np.uint64(40)) | (w2 << np.uint64(24))) & _LIMB_MASK
    limbs[:, 3] = ((w2 >> np.uint64(28)) | (w3 << np.uint64(36))) & _LIMB_MASK
    limbs[:, 4] = w3 >> np.uint64(16)
    return limbs


def limbs_to_rows(limbs: npt.NDArray[np.uint64]) -> Rows:
    """(n, 5) 52-bit limbs below 2²⁵⁶ -> big-endian 32-byte rows."""
    l0, l1, l2, l3, l4 = (limbs[:, i] for i in range(_LIMBS))
    words = np.empty((limbs.shape[0], _WORDS), dtype="<u8")
    words[:, 0] = l0 | (l1 << np.uint64(52))
    words[:, 1] = (l1 >> np.uint64(12)) | (l2 << np.uint64(40))
    words[:, 2] = (l2 >> np.uint64(24)) | (l3 << np.uint64(28))
    words[:, 3] = (l3 >> np.uint64(36)) | (l4 << np.uint64(16))
    return np.ascontiguousarray(words.view(np.uint8).reshape(-1, 32)[:, ::-1])


def _int_limbs(value: int) -> list[int]:
    return [(value >> (_LIMB_BITS * i)) & ((1 << _LIMB_BITS) - 1) for i in range(_LIMBS)]


#: 1 in Montgomery form (R mod p), written straight into every Z.
_MONT_ONE = np.array(_int_limbs((1 << (_LIMB_BITS * _LIMBS)) % p256.PRIME), dtype=np.uint64)
_GENERATOR_ROW = np.frombuffer(
    p256.GX.to_bytes(32, "big") + p256.GY.to_bytes(32, "big"), dtype=np.uint8
).reshape(2, 32)


@dataclass(frozen=True)
class _Library:
    cdll: ctypes.CDLL
    path: Path


_loaded: _Library | None = None
_load_error: str | None = None
_load_lock = threading.Lock()


def _load_runtime(*, required: bool) -> None:
    """Open Intel's runtime libraries from the installed package, globally, by path.

    With a ``PSI_CRYPTO_MB_LIBRARY`` override the package is optional (the system may
    provide the runtime some other way).
    """
    for name in _RUNTIME_LIBRARIES:
        try:
            runtime = _package_file("intel-cmplr-lib-rt", name)
        except CryptoMbUnavailable:
            if required:
                raise
            return
        try:
            ctypes.CDLL(str(runtime), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise CryptoMbUnavailable(f"Intel's runtime {name} cannot be loaded: {exc}") from None


def _open() -> _Library:
    if not _cpu_has_ifma():
        raise CryptoMbUnavailable("this CPU has no AVX-512 IFMA (avx512ifma flag)")
    override = os.environ.get(ENV_LIBRARY)
    if override:
        path = Path(override)
        if not path.is_file():
            raise CryptoMbUnavailable(f"{ENV_LIBRARY}={override} does not name a file")
    else:
        path = _package_file("ipp-crypto", _LIBRARY_FILE)
    _load_runtime(required=not override)
    try:
        cdll = ctypes.CDLL(str(path))
    except OSError as exc:
        raise CryptoMbUnavailable(f"{path.name} cannot be loaded: {exc}") from None
    _declare(cdll)
    features = int(cdll.mbx_get_cpu_features())
    wanted = _CPU_AVX512F | _CPU_AVX512IFMA | _CPU_AVX512_BY_OS
    if features & wanted != wanted or not cdll.mbx_is_crypto_mb_applicable(features):
        raise CryptoMbUnavailable("crypto_mb reports that it cannot run on this CPU")
    library = _Library(cdll=cdll, path=path)
    _self_test(library)
    return library


def load() -> _Library:
    """The library, loaded once per process; CryptoMbUnavailable (cached) if it cannot be."""
    global _loaded, _load_error
    with _load_lock:
        if _loaded is not None:
            return _loaded
        if _load_error is not None:
            raise CryptoMbUnavailable(_load_error)
        try:
            _loaded = _open()
        except CryptoMbUnavailable as exc:
            _load_error = str(exc)
            raise
        return _loaded


def unavailable_reason() -> str | None:
    """None when the library can be used in this process, else why not."""
    try:
        load()
    except CryptoMbUnavailable as exc:
        return str(exc)
    return None


def _self_test(library: _Library) -> None:
    """Eight different lanes against the slow reference; refuse a library that disagrees."""
    scalar = 0x1D5A7F0C33B0E6F9A48E2C5B7D903F61A2C4E6F8091B3D5F7E9C2A4B6D8F0E13
    xs, ys = [], []
    x, y = p256.GX, p256.GY
    for _ in range(LANES):
        xs.append(x.to_bytes(32, "big"))
        ys.append(y.to_bytes(32, "big"))
        x, y = p256.reference_multiply(3, x, y)
    rows_x = np.frombuffer(b"".join(xs), dtype=np.uint8).reshape(LANES, 32)
    rows_y = np.frombuffer(b"".join(ys), dtype=np.uint8).reshape(LANES, 32)
    got_x, got_y = LaneMultiplier(scalar.to_bytes(32, "big"), library).multiply(rows_x, rows_y)
    for lane in range(LANES):
        want = p256.reference_multiply(
            scalar, int.from_bytes(xs[lane], "big"), int.from_bytes(ys[lane], "big")
        )
        got = (
            int.from_bytes(got_x[lane].tobytes(), "big"),
            int.from_bytes(got_y[lane].tobytes(), "big"),
        )
        if got != want:
            raise CryptoMbUnavailable(
                f"{library.path.name} failed its self-test (lane {lane} disagrees with the "
                "reference); not using it"
            )


class LaneMultiplier:
    """s·P for batches of points, eight per library call; one scalar s per instance."""

    def __init__(self, scalar: bytes, library: _Library | None = None) -> None:
        value = p256.check_scalar(scalar)
        self._lib = (library or load()).cdll
        words = np.array(
            [(value >> (64 * i)) & (2**64 - 1) for i in range(_WORDS)] + [0], dtype=np.uint64
        )
        self._scalar = _aligned(_COORD_WORDS).reshape(_LIMBS, LANES)
        self._scalar[:] = words[:, None]

    def multiply(self, xs: Rows, ys: Rows, *, want_y: bool = True) -> tuple[Rows, Rows]:
        """s·(x, y) for affine rows xs, ys (big-endian, 32 bytes); returns x rows and y rows.

        Without ``want_y`` the y rows returned are empty. The caller passes validated
        points (``p256``); they are range-checked again, and the library's on-curve test
        must accept every lane, else RuntimeError (a bug here, never a peer's fault).
        """
        count = xs.shape[0]
        if xs.shape != (count, 32) or ys.shape != (count, 32):
            raise ValueError("coordinates must be (n, 32) big-endian rows")
        empty = np.empty((0, 32), dtype=np.uint8)
        if count == 0:
            return empty, empty
        if not (np.all(p256.below_prime(xs)) and np.all(p256.below_prime(ys))):
            raise ValueError("a coordinate is not a field element")
        batches = -(-count // LANES)
        padded = batches * LANES
        x_rows = np.empty((padded, 32), dtype=np.uint8)
        y_rows = np.empty((padded, 32), dtype=np.uint8)
        x_rows[:count], y_rows[:count] = xs, ys
        x_rows[count:], y_rows[count:] = _GENERATOR_ROW[0], _GENERATOR_ROW[1]

        points = _aligned(batches * _POINT_WORDS).reshape(batches, 3, _LIMBS, LANES)
        points[:, 0] = rows_to_limbs(x_rows).reshape(batches, LANES, _LIMBS).transpose(0, 2, 1)
        points[:, 1] = rows_to_limbs(y_rows).reshape(batches, LANES, _LIMBS).transpose(0, 2, 1)
        points[:, 2] = _MONT_ONE[None, :, None]
        out = _aligned(batches * 2 * _COORD_WORDS).reshape(batches, 2, _LIMBS, LANES)
        product = _aligned(_POINT_WORDS)

        lib = self._lib
        tomont, frommont = lib.ifma_tomont52_p256_mb8, lib.ifma_frommont52_p256_mb8
        on_curve, mul = lib.ifma_is_on_curve_p256_mb8, lib.ifma_ec_nistp256_mul_point_mb8
        affine = lib.get_nistp256_ec_affine_coords_mb8
        scalar, r = self._scalar.ctypes.data, product.ctypes.data
        coord_bytes = _COORD_WORDS * 8
        base, out_base = points.ctypes.data, out.ctypes.data
        for batch in range(batches):
            p = base + batch * _POINT_BYTES
            x_out = out_base + batch * 2 * coord_bytes
            y_out = x_out + coord_bytes if want_y else None
            tomont(p, p)
            tomont(p + coord_bytes, p + coord_bytes)
            if on_curve(p, 0) != _ALL_LANES:
                raise RuntimeError("crypto_mb: a point that reached the library is not on P-256")
            mul(r, p, scalar)
            affine(x_out, y_out, r)
            frommont(x_out, x_out)
            if y_out is not None:
                frommont(y_out, y_out)

        lanes = out.transpose(1, 0, 3, 2).reshape(2, padded, _LIMBS)[:, :count]
        x_result = limbs_to_rows(lanes[0])
        if not np.all(p256.below_prime(x_result)):
            raise RuntimeError("crypto_mb returned a coordinate that is not a field element")
        if not want_y:
            return x_result, empty
        y_result = limbs_to_rows(lanes[1])
        if not np.all(p256.below_prime(y_result)):
            raise RuntimeError("crypto_mb returned a coordinate that is not a field element")
        return x_result, y_result
