"""One query's curve work spread over threads: same answers, in order, errors surfaced."""

from __future__ import annotations

import threading

import pytest

from psi_core.errors import MalformedMessageError, PeerError
from psi_core.protocol import BlindedQuery, Reencryptor, parallel
from psi_core.protocol.openmined import Blinder, KeyCipher
from tests.factories import off_curve_point

SECRET = bytes(range(1, 33))
SCALAR = bytes(range(2, 34))
COUNT = 3 * parallel.MIN_SLICE + 17


def test_slices_cover_the_range_in_order_and_respect_the_minimum():
    assert parallel.slices(0, 4) == []
    assert parallel.slices(10, 4, min_slice=512) == [(0, 10)]
    ranges = parallel.slices(2_000, 3, min_slice=500)
    assert ranges == [(0, 667), (667, 1334), (1334, 2000)]
    assert parallel.slices(1_000, 8, min_slice=400) == [(0, 500), (500, 1000)]


def test_map_slices_uses_several_threads_and_keeps_order(monkeypatch):
    monkeypatch.setattr(parallel, "worker_count", lambda: 3)
    seen: set[int] = set()
    barrier = threading.Barrier(3, timeout=10)

    def work(items):
        seen.add(threading.get_ident())
        barrier.wait()  # all three slices run at the same time, on three threads
        return [i * 2 for i in items]

    items = list(range(3 * 600))
    assert parallel.map_slices(work, items, min_slice=600) == [i * 2 for i in items]
    assert len(seen) == 3


def test_map_slices_raises_the_first_failing_slice(monkeypatch):
    monkeypatch.setattr(parallel, "worker_count", lambda: 2)

    def work(items):
        if items[0] >= 600:
            raise ValueError(f"bad slice {items[0]}")
        return list(items)

    with pytest.raises(ValueError, match="bad slice 600"):
        parallel.map_slices(work, list(range(1_200)), min_slice=600)


@pytest.fixture
def keys() -> list[str]:
    return [f"tin_v1|{i:09d}" for i in range(COUNT)]


def test_parallel_blind_equals_one_client(keys, monkeypatch):
    monkeypatch.setattr(parallel, "worker_count", lambda: 2)
    assert BlindedQuery(SCALAR).blind(keys) == Blinder(SCALAR).blind(keys)


def test_parallel_reencrypt_and_unblind_equal_one_thread(keys, monkeypatch):
    monkeypatch.setattr(parallel, "worker_count", lambda: 2)
    query = BlindedQuery(SCALAR)
    points = query.blind(keys)
    answer = Reencryptor(SECRET).membership(points)
    assert answer == KeyCipher(SECRET).reencrypt(points)
    serial = BlindedQuery(SCALAR)
    monkeypatch.setattr(parallel, "worker_count", lambda: 1)
    expected = serial.fingerprints(len(points), answer)
    monkeypatch.setattr(parallel, "worker_count", lambda: 2)
    assert query.fingerprints(len(points), answer).tolist() == expected.tolist()
    assert sorted(Reencryptor(SECRET).cardinality(points)) == sorted(answer)


def test_a_bad_point_in_a_late_slice_is_refused(keys, monkeypatch):
    monkeypatch.setattr(parallel, "worker_count", lambda: 2)
    query = BlindedQuery(SCALAR)
    points = query.blind(keys)
    tampered = [*points[:-1], off_curve_point()]
    with pytest.raises(MalformedMessageError):
        Reencryptor(SECRET).membership(tampered)
    answer = Reencryptor(SECRET).membership(points)
    with pytest.raises(PeerError, match="malformed"):
        query.fingerprints(len(points), [*answer[:-1], off_curve_point()])
