"""The agency's commitment to its chunks, and the ledger charging a committed request once."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pytest

from psi_core.errors import InvalidInputError
from psi_core.policy import AuthorizationLedger, RequestKey
from psi_core.protocol import ChunkCommitment

CHUNKS = [[bytes([2]) + bytes([i]) * 32 for i in range(3)], [bytes([3]) + bytes([9]) * 32]]


@dataclass(frozen=True)
class Claims:
    token_id: str = "token-1"
    max_queries: int = 5
    max_subjects: int = 100
    expires_at: dt.datetime = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def test_chunks_are_accepted_in_the_committed_order():
    """Each chunk checks against its own digest; the end checks the count."""
    commitment = ChunkCommitment(ChunkCommitment.of(CHUNKS), point_count=4)
    for chunk in CHUNKS:
        commitment.check(chunk)
    commitment.check_complete()


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        ([CHUNKS[1], CHUNKS[0]], "chunk 1 does not match"),
        ([CHUNKS[0], [CHUNKS[1][0][:-1] + b"\x00"]], "chunk 2 does not match"),
        ([*CHUNKS, CHUNKS[1]], "more chunks"),
    ],
)
def test_a_chunk_other_than_the_committed_one_is_refused(sent, message):
    """A swapped, altered or extra chunk is refused before it could be answered."""
    commitment = ChunkCommitment(ChunkCommitment.of(CHUNKS), point_count=5)
    *accepted, refused = _first_refused(commitment, sent)
    for chunk in accepted:
        commitment.check(chunk)
    with pytest.raises(InvalidInputError, match=message):
        commitment.check(refused)


def _first_refused(commitment: ChunkCommitment, sent: list[list[bytes]]) -> list[list[bytes]]:
    """The chunks up to and including the first one a fresh copy of ``commitment`` refuses."""
    probe = ChunkCommitment(commitment.digests, point_count=5)
    for number, chunk in enumerate(sent):
        try:
            probe.check(chunk)
        except InvalidInputError:
            return sent[: number + 1]
    raise AssertionError("every chunk was accepted")


def test_missing_chunks_are_refused_at_the_end():
    commitment = ChunkCommitment(ChunkCommitment.of(CHUNKS), point_count=4)
    commitment.check(CHUNKS[0])
    with pytest.raises(InvalidInputError, match="1 chunks were sent but the header committed to 2"):
        commitment.check_complete()


@pytest.mark.parametrize(
    ("digests", "points"),
    [([], 4), ([b"\x00" * 31], 4), ([b"\x00" * 32] * 5, 4)],
)
def test_unusable_commitments_are_refused(digests, points):
    """No digest, a short digest, or more digests than points."""
    with pytest.raises(InvalidInputError):
        ChunkCommitment(digests, point_count=points)


def test_the_request_digest_depends_on_every_chunk_and_their_order():
    one = ChunkCommitment(ChunkCommitment.of(CHUNKS), 4).request_sha256()
    swapped = ChunkCommitment(ChunkCommitment.of(CHUNKS[::-1]), 4).request_sha256()
    assert one != swapped and len(one) == 32
    assert one != hashlib.sha256(b"".join(ChunkCommitment.of(CHUNKS))).digest()


def test_a_committed_request_is_charged_once_however_often_it_runs(tmp_path):
    """The ledger remembers a committed request with its charge: the re-run is a replay."""
    key = RequestKey(
        sha256=ChunkCommitment(ChunkCommitment.of(CHUNKS), 4).request_sha256(),
        point_count=4,
        mode="membership",
        recipe="tin_v1",
        epoch_id="e1",
    )
    with AuthorizationLedger(tmp_path / "ledger.sqlite") as ledger:
        first = ledger.charge(Claims(), 4, committed=key)
        again = ledger.charge(Claims(), 4, committed=key)
        other = ledger.charge(
            Claims(), 4, committed=RequestKey(b"\x01" * 32, 4, "membership", "tin_v1", "e1")
        )
    assert not first.replayed and again.replayed and not other.replayed
    assert (again.queries_used, again.subjects_used) == (1, 4)
    assert (other.queries_used, other.subjects_used) == (2, 8)
