"""P-256 scalar multiplication and square roots, many lanes per call, with Intel's
``crypto_mb`` (ctypes).

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
``ifma_frommont52_p256_mb8``) and the field routines (``ifma_amm52``/``ams52``/``aminv52``
and friends), on the layout they share: a coordinate is five 52-bit limbs, each limb a
64-byte vector holding that limb of eight points (lanes); a point is X, Y, Z (Jacobian) in
Montgomery form (R = 2²⁶⁰); a scalar is five 64-bit words, word-major and lane-minor, the
last one zero. The products leave Jacobian coordinates with one field inversion for the
whole batch (Montgomery's trick) rather than one per eight points.

Square roots (``curve_roots``: decompression and hash-to-curve need y from x) are a fixed
exponentiation a^((p+1)/4), 253 squarings and 7 multiplications. gmpy2 takes about 12 µs
for one; the library's field routines do sixteen lanes per call (``ifma_ams52_p256_dual_mb8``,
``ifma_amm52_p256_dual_mb8``), so the 260 calls of the chain cost under half a microsecond
each for sixteen roots: about 7 µs a root with the Python around them, measured by
``tests/unit/test_backends.py`` against gmpy2 for correctness and by the backend benchmarks
for speed. The field values stay in the library's redundant Montgomery range [0, 2p) until
``ifma_frommont52_p256_mb8`` brings them back below p (checked).

Guarantees, since these routines check nothing themselves:

* every point comes from ``p256`` (decompressed and validated, or hashed to the curve) and
  is range-checked again here; the library's own on-curve test must then accept all eight
  lanes, else nothing is returned;
* scalars are in [1, n−1];
* outputs are checked to be field elements;
* on load, a self-test compares the library's products with ``p256.reference_multiply``
  and its square roots with the known y of the same points; a library that disagrees is
  not used.

The routines are pure functions of caller-owned buffers (only constant tables are shared):
one ``LaneMultiplier``, and ``curve_roots``, may be used from any number of threads at once.
The long routines (the multiplication, the inversion) release the GIL while they run; the
short field routines keep it (``_Library``). Each process loads the library itself
(nothing here is pickled).
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
_COORD_BYTES = _COORD_WORDS * 8
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


def _declare(lib: ctypes.CDLL | ctypes.PyDLL) -> None:
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
        # void (U64 r[5], const U64 z[5]): r = z^(p−2) = 1/z
        "ifma_aminv52_p256_mb8": ([vp, vp], None),
        # field arithmetic mod p on Montgomery-form lanes (values kept in [0, 2p)):
        # void (U64 r[5], const U64 a[5], const U64 b[5])
        "ifma_amm52_p256_mb8": ([vp, vp, vp], None),
        "ifma_sub52_p256_mb8": ([vp, vp, vp], None),
        "ifma_add52_p256_mb8": ([vp, vp, vp], None),
        # void (U64 r[5], const U64 a[5])
        "ifma_ams52_p256_mb8": ([vp, vp], None),
        "ifma_tripple52_p256_mb8": ([vp, vp], None),
        # two independent eight-lane operations per call (sixteen lanes):
        # void (U64 r0[5], U64 r1[5], const U64 a0[5], const U64 a1[5])
        "ifma_ams52_p256_dual_mb8": ([vp, vp, vp, vp], None),
        # void (U64 r0[5], U64 r1[5], const U64 a0[5], const U64 b0[5],
        #       const U64 a1[5], const U64 b1[5])
        "ifma_amm52_p256_dual_mb8": ([vp, vp, vp, vp, vp, vp], None),
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
    """The library twice over: ``cdll`` releases the GIL for each call (the long ones:
    multiplying and leaving Jacobian coordinates), ``field`` keeps it (field routines of
    well under a microsecond, where releasing and taking back the GIL would cost more
    than the call and two threads would hand it back and forth on every call)."""

    cdll: ctypes.CDLL
    field: ctypes.PyDLL
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
        field = ctypes.PyDLL(str(path))
    except OSError as exc:
        raise CryptoMbUnavailable(f"{path.name} cannot be loaded: {exc}") from None
    _declare(cdll)
    _declare(field)
    features = int(cdll.mbx_get_cpu_features())
    wanted = _CPU_AVX512F | _CPU_AVX512IFMA | _CPU_AVX512_BY_OS
    if features & wanted != wanted or not cdll.mbx_is_crypto_mb_applicable(features):
        raise CryptoMbUnavailable("crypto_mb reports that it cannot run on this CPU")
    library = _Library(cdll=cdll, field=field, path=path)
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
    """Eight different lanes against the slow reference (products and square roots); refuse
    a library that disagrees."""
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
    roots, exists = curve_roots(rows_x, library)
    for lane, root in enumerate(roots):
        y = int.from_bytes(ys[lane], "big")
        if not exists[lane] or int.from_bytes(root.tobytes(), "big") not in (y, p256.PRIME - y):
            raise CryptoMbUnavailable(
                f"{library.path.name} failed its self-test (the square root in lane {lane} "
                "is wrong); not using it"
            )


class LaneMultiplier:
    """s·P for batches of points, eight per library call; one scalar s per instance."""

    def __init__(self, scalar: bytes, library: _Library | None = None) -> None:
        value = p256.check_scalar(scalar)
        self._library = library or load()
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
        products = _aligned(batches * _POINT_WORDS)

        field, cdll = self._library.field, self._library.cdll
        tomont, on_curve = field.ifma_tomont52_p256_mb8, field.ifma_is_on_curve_p256_mb8
        mul = cdll.ifma_ec_nistp256_mul_point_mb8
        scalar, base, product = self._scalar.ctypes.data, points.ctypes.data, products.ctypes.data
        for batch in range(batches):
            p = base + batch * _POINT_BYTES
            tomont(p, p)
            tomont(p + _COORD_BYTES, p + _COORD_BYTES)
            if on_curve(p, 0) != _ALL_LANES:
                raise RuntimeError("crypto_mb: a point that reached the library is not on P-256")
            mul(product + batch * _POINT_BYTES, p, scalar)
        out = self._affine(products, batches, want_y)

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

    def _affine(
        self, products: npt.NDArray[np.uint64], batches: int, want_y: bool
    ) -> npt.NDArray[np.uint64]:
        """(batches, 2, 5, 8) canonical x (and y) of Jacobian products (X, Y, Z).

        x = X/Z², y = Y/Z³, with one inversion for all batches (Montgomery's trick, lane
        by lane: invert the product of every Z, then peel the factors off) instead of one
        per batch as ``get_nistp256_ec_affine_coords_mb8`` does. No Z is zero (s·P is
        never the point at infinity for s in [1, n−1]); checked anyway, since one zero
        would spoil every lane's inverse.
        """
        lib = self._library.field
        amm, ams = lib.ifma_amm52_p256_mb8, lib.ifma_ams52_p256_mb8
        frommont = lib.ifma_frommont52_p256_mb8
        product = products.ctypes.data

        def x_of(g: int) -> int:
            return product + g * _POINT_BYTES

        def z_of(g: int) -> int:
            return x_of(g) + 2 * _COORD_BYTES

        prefixes = _aligned(batches * _COORD_WORDS)
        prefix = prefixes.ctypes.data
        prefixes[:_COORD_WORDS] = products[2 * _COORD_WORDS : 3 * _COORD_WORDS]
        for g in range(1, batches):
            amm(prefix + g * _COORD_BYTES, prefix + (g - 1) * _COORD_BYTES, z_of(g))
        last = prefix + (batches - 1) * _COORD_BYTES
        check = _aligned(_COORD_WORDS)
        frommont(check.ctypes.data, last)
        total = limbs_to_rows(check.reshape(_LIMBS, LANES).T)
        if not np.all(p256.below_prime(total) & total.any(axis=1)):
            raise RuntimeError("crypto_mb returned the point at infinity")
        inverse = _aligned(_COORD_WORDS)
        self._library.cdll.ifma_aminv52_p256_mb8(inverse.ctypes.data, last)

        out = _aligned(batches * 2 * _COORD_WORDS)
        result = out.ctypes.data
        z_inverse, factor = _aligned(_COORD_WORDS), _aligned(_COORD_WORDS)
        zi, f, inv = z_inverse.ctypes.data, factor.ctypes.data, inverse.ctypes.data
        for g in range(batches - 1, -1, -1):
            if g:
                amm(zi, inv, prefix + (g - 1) * _COORD_BYTES)
                amm(inv, inv, z_of(g))
            else:
                z_inverse[:] = inverse
            x_out = result + g * 2 * _COORD_BYTES
            ams(f, zi)
            amm(x_out, x_of(g), f)
            frommont(x_out, x_out)
            if want_y:
                y_out = x_out + _COORD_BYTES
                amm(f, f, zi)
                amm(y_out, x_of(g) + _COORD_BYTES, f)
                frommont(y_out, y_out)
        return out.reshape(batches, 2, _LIMBS, LANES)


# -- square roots on the curve -------------------------------------------------------------

#: b·R mod p: the curve coefficient b in Montgomery form, in every lane.
_MONT_B = np.array(_int_limbs((p256.B << (_LIMB_BITS * _LIMBS)) % p256.PRIME), dtype=np.uint64)
#: Squarings and multiplications computing a^((p+1)/4), the square root of a square a
#: (p ≡ 3 mod 4). (p+1)/4 = (2³²−1)·2²²² + 2¹⁹⁰ + 2⁹⁴: build a^(2³²−1) by doubling runs
#: of ones, then shift and add the two single bits. 253 squarings, 7 multiplications.
_ONES_RUNS = (2, 4, 8, 16)
_SHIFTS = (32, 96)
_LAST_SHIFT = 94


class _Lanes:
    """Field elements in the library's layout, two eight-lane groups per dual call.

    ``array`` is (groups, 5, 8) uint64, 64-byte aligned, with an even number of groups;
    ``group`` and ``pairs`` hold the addresses the routines are called with.
    """

    def __init__(self, groups: int) -> None:
        self.array = _aligned(groups * _COORD_WORDS).reshape(groups, _LIMBS, LANES)
        base = self.array.ctypes.data
        self.group = [ctypes.c_void_p(base + g * _COORD_BYTES) for g in range(groups)]
        self.pairs = list(zip(self.group[0::2], self.group[1::2], strict=True))

    @classmethod
    def of_rows(cls, rows: Rows) -> _Lanes:
        """Big-endian rows (already checked < p), padded with zeros to whole pairs."""
        groups = 2 * -(-rows.shape[0] // (2 * LANES))
        lanes = cls(groups)
        limbs = np.zeros((groups * LANES, _LIMBS), dtype=np.uint64)
        limbs[: rows.shape[0]] = rows_to_limbs(rows)
        lanes.array[:] = limbs.reshape(groups, LANES, _LIMBS).transpose(0, 2, 1)
        return lanes

    def rows(self, count: int) -> Rows:
        limbs = self.array.transpose(0, 2, 1).reshape(-1, _LIMBS)[:count]
        return limbs_to_rows(limbs)


class _Field:
    """Arithmetic mod p over whole ``_Lanes``, one library call per group or pair."""

    def __init__(self, field: ctypes.PyDLL) -> None:
        self._lib = field

    def each(self, name: str, out: _Lanes, *inputs: _Lanes) -> None:
        routine = getattr(self._lib, name)
        for g, target in enumerate(out.group):
            routine(target, *(lanes.group[g] for lanes in inputs))

    def square(self, out: _Lanes, a: _Lanes) -> None:
        ams = self._lib.ifma_ams52_p256_dual_mb8
        for (r0, r1), (a0, a1) in zip(out.pairs, a.pairs, strict=True):
            ams(r0, r1, a0, a1)

    def sqrt_candidate(self, a: _Lanes) -> _Lanes:
        """a^((p+1)/4): the square root of a when a is a square (Montgomery form).

        The whole chain runs on one pair before the next (its buffers stay in cache).
        """
        ams, amm = self._lib.ifma_ams52_p256_dual_mb8, self._lib.ifma_amm52_p256_dual_mb8
        groups = len(a.group)
        acc, tmp = _Lanes(groups), _Lanes(groups)
        for (a0, a1), (r0, r1), (t0, t1) in zip(a.pairs, acc.pairs, tmp.pairs, strict=True):
            ams(r0, r1, a0, a1)
            amm(r0, r1, r0, a0, r1, a1)
            for run in _ONES_RUNS:
                ams(t0, t1, r0, r1)
                for _ in range(run - 1):
                    ams(t0, t1, t0, t1)
                amm(r0, r1, t0, r0, t1, r1)
            for shift in _SHIFTS:
                for _ in range(shift):
                    ams(r0, r1, r0, r1)
                amm(r0, r1, r0, a0, r1, a1)
            for _ in range(_LAST_SHIFT):
                ams(r0, r1, r0, r1)
        return acc


def curve_roots(xs: Rows, library: _Library | None = None) -> tuple[Rows, npt.NDArray[np.bool_]]:
    """For each x row: a square root y of x³ − 3x + b (either one), and whether it exists.

    The same contract as ``p256.curve_roots`` (the gmpy2 reference), sixteen lanes per
    library call: this is the square root that decompression and hash-to-curve need, a
    fixed exponentiation (no secret-dependent branches). Rows must be < p (checked).
    """
    count = xs.shape[0]
    if xs.shape != (count, p256.COORDINATE_BYTES):
        raise ValueError("coordinates must be (n, 32) big-endian rows")
    if count == 0:
        return np.empty((0, 32), dtype=np.uint8), np.empty(0, dtype=np.bool_)
    if not np.all(p256.below_prime(xs)):
        raise ValueError("a coordinate is not a field element")
    field = _Field((library or load()).field)
    x = _Lanes.of_rows(xs)
    groups = len(x.group)
    field.each("ifma_tomont52_p256_mb8", x, x)
    coefficient = _Lanes(groups)
    coefficient.array[:] = _MONT_B[None, :, None]
    rhs, term = _Lanes(groups), _Lanes(groups)
    field.each("ifma_ams52_p256_mb8", rhs, x)
    field.each("ifma_amm52_p256_mb8", rhs, rhs, x)
    field.each("ifma_tripple52_p256_mb8", term, x)
    field.each("ifma_sub52_p256_mb8", rhs, rhs, term)
    field.each("ifma_add52_p256_mb8", rhs, rhs, coefficient)
    root = field.sqrt_candidate(rhs)
    squared = _Lanes(groups)
    field.square(squared, root)
    for lanes in (root, squared, rhs):
        field.each("ifma_frommont52_p256_mb8", lanes, lanes)
    ys = root.rows(count)
    if not np.all(p256.below_prime(ys)):
        raise RuntimeError("crypto_mb returned a coordinate that is not a field element")
    exists = np.all(squared.rows(count) == rhs.rows(count), axis=1)
    return ys, np.asarray(exists)
