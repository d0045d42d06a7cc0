"""Which epoch the agency runs a new query on, and how it treats a retired one."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from psi_agency.custodian_client import CustodianFacts, EpochFacts
from psi_agency.epochs import IndexHolder
from psi_core.errors import PreconditionError
from psi_core.index import IndexManifest

NOW = 1_800_000_000.0


def _epoch(epoch_id: str, *, current: bool, ends_at: int = 0) -> EpochFacts:
    base = IndexManifest(epoch_id, ("tin_v1",), 1, 1, 8, epoch_id[0] * 64)
    return EpochFacts(epoch_id, current, ends_at, ("tin_v1",), 1, 1, base)


def _facts(*epochs: EpochFacts) -> CustodianFacts:
    return CustodianFacts(
        custodian_id="custodian",
        manifest=epochs[0].base,
        max_points_per_chunk=8,
        max_subjects_per_query=100,
        max_message_bytes=1 << 20,
        points_per_request=8,
        epochs=epochs,
    )


@dataclass
class FakeIndex:
    """What the holder reads of an index copy."""

    manifest: IndexManifest
    version: tuple[str, ...]


class Syncs:
    """A sync that records which epochs were fetched; ``gate`` holds background syncs."""

    def __init__(self) -> None:
        self.fetched: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, epoch: EpochFacts) -> FakeIndex:
        self.gate.wait(30)
        self.fetched.append(epoch.epoch_id)
        return FakeIndex(epoch.base, epoch.version)


@pytest.fixture
def syncs() -> Syncs:
    return Syncs()


def _holder(syncs: Syncs) -> IndexHolder:
    return IndexHolder(syncs, clock=lambda: NOW, min_remaining=300)  # type: ignore[arg-type]


def test_new_queries_stay_on_a_held_older_epoch_while_the_new_one_downloads(syncs):
    """The current epoch's base is not here: the query uses the older one, the new one
    downloads in the background, and the next query moves to it."""
    old = _epoch("aaaa", current=True)
    holder = _holder(syncs)
    holder.for_new_query(_facts(old))
    rotated = _facts(
        _epoch("bbbb", current=True), _epoch("aaaa", current=False, ends_at=NOW + 3600)
    )
    syncs.gate.clear()
    chosen, _ = holder.for_new_query(rotated)
    assert chosen.epoch_id == "aaaa"
    syncs.gate.set()
    holder.wait_for_background(30)
    assert syncs.fetched == ["aaaa", "bbbb"]
    assert holder.for_new_query(rotated)[0].epoch_id == "bbbb"


def test_an_older_epoch_about_to_end_is_not_used_for_a_new_query(syncs):
    """Less than min_remaining left: the query waits for the current epoch instead."""
    holder = _holder(syncs)
    holder.for_new_query(_facts(_epoch("aaaa", current=True)))
    rotated = _facts(
        _epoch("bbbb", current=True), _epoch("aaaa", current=False, ends_at=int(NOW) + 60)
    )
    chosen, _ = holder.for_new_query(rotated)
    assert chosen.epoch_id == "bbbb"
    assert syncs.fetched == ["aaaa", "bbbb"]


def test_a_pinned_query_on_a_retired_epoch_fails_clearly(syncs):
    holder = _holder(syncs)
    with pytest.raises(PreconditionError, match=r"retired it.*Submit the query again"):
        holder.for_epoch(_facts(_epoch("bbbb", current=True)), "aaaa")
    assert syncs.fetched == []


def test_a_pinned_query_stays_on_its_epoch_during_the_overlap(syncs):
    holder = _holder(syncs)
    rotated = _facts(
        _epoch("bbbb", current=True), _epoch("aaaa", current=False, ends_at=int(NOW) + 5)
    )
    assert holder.for_epoch(rotated, "aaaa")[0].epoch_id == "aaaa"
