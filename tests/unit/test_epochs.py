"""Key epochs and incremental updates on disk: the registry, retirement, segments, compaction.

Time is an injected clock that tests move by hand; nothing sleeps.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from psi_core.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    PreconditionError,
)
from psi_core.index import (
    ADD,
    CURRENT,
    PENDING,
    REMOVE,
    RETIRED,
    RETIRING,
    EpochRegistry,
    IndexDownload,
    IndexManifest,
    SegmentedIndex,
    ServedEpochs,
    build_index,
    build_segment,
    check_catalog,
    compact,
    create_epoch,
    destroy_file,
    encrypt_shard,
    iter_live_keys,
    list_segments,
    parse_duration,
    read_manifest,
)
from psi_core.index import segments as segments_module
from psi_core.protocol import fingerprint
from psi_core.recipes import RECIPES, get_recipe
from tests.factories import make_records, write_records

TIN = get_recipe("tin_v1")


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def _always(_: str) -> bool:
    return True


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(tmp_path, clock) -> EpochRegistry:
    return EpochRegistry(tmp_path, clock=clock)


def _fingerprints(epoch_key, records) -> np.ndarray:
    """The fingerprint of each record's tin key, in record order."""
    return np.concatenate([encrypt_shard(epoch_key.secret, [TIN.key(r)]) for r in records])


# -- the registry ------------------------------------------------------------------------


def test_first_epoch_is_current_and_a_new_one_is_pending(registry):
    """``create(current=True)`` makes the first epoch current; later ones wait as pending."""
    first = registry.create(current=True)
    second = registry.create()
    states = {r.epoch_id: r.state for r in registry.records()}
    assert states == {first.epoch_id: CURRENT, second.epoch_id: PENDING}
    assert registry.current().epoch_id == first.epoch_id
    assert [r.epoch_id for r in registry.serving()] == [first.epoch_id]
    key_file = registry.root / "epochs" / second.epoch_id / "epoch.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert registry.key(second.epoch_id).secret == second.secret


def test_a_second_current_epoch_cannot_be_created(registry):
    """Only activation replaces the current epoch."""
    registry.create(current=True)
    with pytest.raises(PreconditionError, match="already has a current"):
        registry.create(current=True)


def test_activation_needs_a_built_index(registry):
    """An epoch whose index is not built stays pending."""
    registry.create(current=True)
    pending = registry.create()
    with pytest.raises(PreconditionError, match="has no index yet"):
        registry.activate(pending.epoch_id, timedelta(days=7), ready=lambda _: False)
    assert registry.get(pending.epoch_id).state == PENDING


@pytest.mark.parametrize(
    ("target", "error", "phrase"),
    [("missing", NotFoundError, "no key epoch"), ("first", PreconditionError, "only a pending")],
)
def test_only_a_pending_epoch_can_be_activated(registry, target, error, phrase):
    """Activating an unknown or the current epoch is refused and changes nothing."""
    first = registry.create(current=True)
    epoch_id = first.epoch_id if target == "first" else "feedfeedfeedfeed"
    before = registry.records()
    with pytest.raises(error, match=phrase):
        registry.activate(epoch_id, timedelta(days=7), ready=_always)
    assert registry.records() == before


def test_activation_starts_the_overlap_window(registry, clock):
    """The replaced epoch is retiring until now + overlap; both are served meanwhile."""
    old = registry.create(current=True)
    new = registry.create()
    current, previous = registry.activate(new.epoch_id, timedelta(days=7), ready=_always)
    assert current.epoch_id == new.epoch_id and current.state == CURRENT
    assert previous is not None and previous.epoch_id == old.epoch_id
    assert previous.state == RETIRING
    assert previous.ends_at == (clock.now + timedelta(days=7)).isoformat(timespec="seconds")
    assert [r.epoch_id for r in registry.serving()] == [new.epoch_id, old.epoch_id]
    clock.advance(days=7)
    assert [r.epoch_id for r in registry.serving()] == [new.epoch_id]


def test_retirement_destroys_the_key_and_deletes_the_index(registry, clock):
    """After the window: key file overwritten and gone, index deleted, state retired."""
    old = registry.create(current=True)
    old_index = registry.index_dir(old.epoch_id)
    old_index.mkdir(parents=True)
    (old_index / "fingerprints.u64").write_bytes(b"\0" * 8)
    key_file = registry.root / "epochs" / old.epoch_id / "epoch.key"
    second_link = registry.root / "key-hardlink"
    os.link(key_file, second_link)
    new = registry.create()
    registry.activate(new.epoch_id, timedelta(hours=1), ready=_always)

    assert registry.retire_expired() == []
    clock.advance(hours=1)
    retired = registry.retire_expired()

    assert [r.epoch_id for r in retired] == [old.epoch_id]
    assert registry.get(old.epoch_id).state == RETIRED
    assert not key_file.exists() and not old_index.exists()
    assert old.secret.hex() not in second_link.read_bytes().decode("latin-1")
    with pytest.raises(PreconditionError, match="retired"):
        registry.key(old.epoch_id)
    assert registry.retire_expired() == []


def test_zero_overlap_retires_at_once(registry):
    """``--overlap 0`` ends the old epoch the moment the new one is activated."""
    old = registry.create(current=True)
    new = registry.create()
    registry.activate(new.epoch_id, timedelta(0), ready=_always)
    assert [r.epoch_id for r in registry.retire_expired()] == [old.epoch_id]


def test_a_pre_epoch_state_directory_is_adopted_in_place(tmp_path, clock):
    """One key in ``epoch/`` and no registry: it becomes the current epoch; nothing moves."""
    legacy = create_epoch(tmp_path / "epoch")
    registry = EpochRegistry(tmp_path, clock=clock)
    [record] = registry.records()
    assert (record.epoch_id, record.state, record.key_dir) == (legacy.epoch_id, CURRENT, "epoch")
    assert registry.key(legacy.epoch_id).secret == legacy.secret
    assert json.loads((tmp_path / "epochs.json").read_text())["epochs"][0]["key_dir"] == "epoch"
    assert (tmp_path / "epoch" / "epoch.key").exists()


def test_an_empty_directory_has_no_epochs(registry):
    """No key at all: no epochs, and asking for the current one says what to run."""
    assert registry.records() == []
    with pytest.raises(PreconditionError, match="no current key epoch"):
        registry.current()


def test_a_damaged_registry_is_data_loss(registry):
    """A registry that does not parse is IntegrityError, not a fresh start."""
    registry.create(current=True)
    (registry.root / "epochs.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="damaged"):
        registry.records()


def test_crash_inside_create_leaves_an_orphan_key_that_retirement_destroys(registry):
    """A key directory no registry entry names (crash before the registry write) is destroyed."""
    registry.create(current=True)
    orphan = create_epoch(registry.root / "epochs" / "deadbeef")
    assert orphan.epoch_id not in {r.epoch_id for r in registry.records()}
    registry.retire_expired()
    assert not (registry.root / "epochs" / "deadbeef").exists()


def test_crash_mid_retirement_is_finished_by_the_next_call(registry, clock, monkeypatch):
    """Key destroyed but registry not yet written (the fault point): the next call finishes."""
    old = registry.create(current=True)
    new = registry.create()
    registry.activate(new.epoch_id, timedelta(hours=1), ready=_always)
    clock.advance(hours=2)

    class Killed(BaseException):
        pass

    def crash(records):
        raise Killed

    monkeypatch.setattr(registry, "_write", crash)
    with pytest.raises(Killed):
        registry.retire_expired()
    monkeypatch.undo()
    assert not (registry.root / "epochs" / old.epoch_id / "epoch.key").exists()
    assert registry.get(old.epoch_id).state == RETIRING
    assert [r.epoch_id for r in registry.retire_expired()] == [old.epoch_id]
    assert registry.get(old.epoch_id).state == RETIRED


def test_crash_mid_activation_leaves_the_previous_state(registry, monkeypatch):
    """A crash while writing the registry (torn temp file) keeps the old, whole registry."""
    old = registry.create(current=True)
    new = registry.create()
    (registry.root / "epochs.json.tmp").write_text('{"epochs": [')
    assert registry.current().epoch_id == old.epoch_id
    registry.activate(new.epoch_id, timedelta(days=1), ready=_always)
    assert registry.current().epoch_id == new.epoch_id


def test_negative_overlap_is_refused(registry):
    registry.create(current=True)
    new = registry.create()
    with pytest.raises(InvalidInputError):
        registry.activate(new.epoch_id, timedelta(seconds=-1), ready=_always)


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 7 * 86400), ("36h", 36 * 3600), ("90m", 5400), ("0", 0)]
)
def test_durations_parse(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "7", "d", "7w", "-1h", "1.5.2h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(InvalidInputError):
        parse_duration(text)


def test_destroy_file_of_a_missing_file_is_a_no_op(tmp_path):
    destroy_file(tmp_path / "absent")


# -- served epochs -----------------------------------------------------------------------


def _built_registry(tmp_path, clock, records) -> tuple[EpochRegistry, str, str]:
    registry = EpochRegistry(tmp_path, clock=clock)
    old = registry.create(current=True)
    new = registry.create()
    source = write_records(tmp_path / "records.parquet", records)
    for key in (old, new):
        build_index(source, registry.index_dir(key.epoch_id), key, [TIN], batch_rows=50)
    return registry, old.epoch_id, new.epoch_id


def test_served_epochs_follow_activation_and_retire_on_the_first_call_after_the_window(
    tmp_path, clock
):
    """The service view sees an activation made elsewhere and retires once time is up."""
    registry, old, new = _built_registry(tmp_path, clock, make_records(40, seed=1))
    retired: list[str] = []
    served = ServedEpochs(registry, on_retired=lambda r: retired.append(r.epoch_id))
    assert [e.epoch_id for e in served.refresh()] == [old]

    EpochRegistry(tmp_path, clock=clock).activate(new, timedelta(days=7), ready=_always)
    assert [e.epoch_id for e in served.refresh()] == [new, old]
    assert served.get(old).reencryptor is not served.get(new).reencryptor

    clock.advance(days=7)
    assert [e.epoch_id for e in served.refresh()] == [new]
    assert retired == [old]
    with pytest.raises(PreconditionError, match=f"key epoch {old} was retired"):
        served.get(old)
    with pytest.raises(PreconditionError, match="is not served"):
        served.get("0123456789abcdef")


def test_a_pending_epoch_is_not_served(tmp_path, clock):
    registry, _, new = _built_registry(tmp_path, clock, make_records(20, seed=2))
    with pytest.raises(PreconditionError, match="is pending, not served"):
        ServedEpochs(registry).get(new)


# -- segments ----------------------------------------------------------------------------


@pytest.fixture
def epoch_index(tmp_path):
    """A base index of 60 records under the tin recipe, with its key and records."""
    key = create_epoch(tmp_path / "key")
    records = make_records(90, seed=5)
    directory = tmp_path / "index"
    build_index(
        write_records(tmp_path / "base.parquet", records[:60]),
        directory,
        key,
        [TIN],
        batch_rows=25,
        classic_keys=True,
    )
    return key, records, directory


def _segment(tmp_path, directory, key, rows, kind, name):
    return build_segment(
        write_records(tmp_path / f"{name}.parquet", rows), directory, key, kind, batch_rows=25
    )


def _live(directory, key, rows) -> list[bool]:
    return SegmentedIndex.open(directory).contains(_fingerprints(key, rows)).tolist()


def test_lookups_see_base_plus_deltas_minus_removals(tmp_path, epoch_index):
    """Appended records match, removed ones stop matching, a re-append brings one back."""
    key, records, directory = epoch_index
    appended = _segment(tmp_path, directory, key, records[60:90], ADD, "a1")
    assert appended.records_read == 30 and appended.manifest.seq == 1
    assert all(_live(directory, key, records))
    _segment(tmp_path, directory, key, records[:10], REMOVE, "r1")
    live = _live(directory, key, records)
    assert live == [False] * 10 + [True] * 80
    _segment(tmp_path, directory, key, records[:3], ADD, "a2")
    assert _live(directory, key, records[:10]) == [True] * 3 + [False] * 7
    index = SegmentedIndex.open(directory)
    assert [s.manifest.seq for s in index.segments] == [1, 2, 3]
    assert index.record_count == 60 + 30 - 10 + 3


def test_an_append_encrypts_only_the_appended_records(tmp_path, epoch_index):
    """The segment holds exactly the appended records' fingerprints; the base is untouched."""
    key, records, directory = epoch_index
    base_before = (directory / "fingerprints.u64").read_bytes()
    report = _segment(tmp_path, directory, key, records[60:65], ADD, "a")
    assert report.keys_encrypted == 5
    [segment] = list_segments(directory)
    values = SegmentedIndex.open(directory).segments[0].values
    assert values.tolist() == sorted(_fingerprints(key, records[60:65]).tolist())
    assert segment.kind == ADD and segment.key_count == 5
    assert (directory / "fingerprints.u64").read_bytes() == base_before


def test_a_segment_under_another_epoch_key_is_refused(tmp_path, epoch_index):
    _, records, directory = epoch_index
    other = create_epoch(tmp_path / "other")
    with pytest.raises(PreconditionError, match="another key epoch"):
        _segment(tmp_path, directory, other, records[60:62], ADD, "x")
    assert list_segments(directory) == []


def test_compaction_merges_segments_into_an_equal_base(tmp_path, epoch_index):
    """After compact: no segments, the same live set, seq through the last merged segment."""
    key, records, directory = epoch_index
    _segment(tmp_path, directory, key, records[60:90], ADD, "a1")
    _segment(tmp_path, directory, key, records[:10], REMOVE, "r1")
    before = _live(directory, key, records)
    keys_before = sorted(iter_live_keys(directory))
    manifest = compact(directory)
    assert manifest.seq == 2 and manifest.key_count == 80
    assert list_segments(directory) == []
    assert _live(directory, key, records) == before
    assert sorted(iter_live_keys(directory)) == keys_before
    assert len(keys_before) == 80
    after = _segment(tmp_path, directory, key, records[:1], ADD, "a3")
    assert after.manifest.seq == 3


def test_compaction_crash_before_commit_is_dropped(tmp_path, epoch_index, monkeypatch):
    """A compaction killed before its commit mark leaves the old base and segments serving."""
    key, records, directory = epoch_index
    _segment(tmp_path, directory, key, records[60:70], ADD, "a1")
    before = _live(directory, key, records)

    class Killed(BaseException):
        pass

    def crash(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(segments_module, "iter_live_keys", crash)
    with pytest.raises(Killed):
        compact(directory)
    monkeypatch.undo()
    assert (directory / ".compact").exists()
    segments_module.recover_compaction(directory)
    assert not (directory / ".compact").exists()
    assert len(list_segments(directory)) == 1
    assert _live(directory, key, records) == before


def test_compaction_crash_after_commit_is_finished(tmp_path, epoch_index, monkeypatch):
    """Killed after the commit mark (the fault point): recovery rolls the new base forward."""
    key, records, directory = epoch_index
    _segment(tmp_path, directory, key, records[60:70], ADD, "a1")
    before = _live(directory, key, records)

    class Killed(BaseException):
        pass

    real = segments_module.recover_compaction
    calls = {"n": 0}

    def crash_on_second(path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed
        real(path)

    monkeypatch.setattr(segments_module, "recover_compaction", crash_on_second)
    with pytest.raises(Killed):
        compact(directory)
    monkeypatch.undo()
    assert (directory / ".compact" / "COMMIT").exists()
    real(directory)
    assert list_segments(directory) == []
    assert read_manifest(directory).seq == 1
    assert _live(directory, key, records) == before


def _manifest(kind: str, seq: int, epoch: str = "e") -> IndexManifest:
    return IndexManifest(epoch, ("tin_v1",), 0, 0, 0, "0" * 64, kind=kind, seq=seq)


@pytest.mark.parametrize(
    ("base", "segments", "phrase"),
    [
        (_manifest(ADD, 0), [], "kind 'base'"),
        (_manifest("base", 2), [_manifest(ADD, 2)], "strictly increasing"),
        (_manifest("base", 0), [_manifest(ADD, 2), _manifest(ADD, 1)], "strictly increasing"),
        (_manifest("base", 0), [_manifest("base", 1)], "'add' or 'remove'"),
        (_manifest("base", 0), [_manifest(ADD, 1, "other")], "another key epoch"),
    ],
    ids=["base-not-base", "seq-not-after-base", "out-of-order", "base-as-segment", "other-epoch"],
)
def test_inconsistent_catalogs_are_refused(base, segments, phrase):
    with pytest.raises(IntegrityError, match=phrase):
        check_catalog(base, segments)


def test_a_manifest_of_unknown_kind_is_damaged():
    text = _manifest("base", 0).to_json().replace('"base"', '"sideways"')
    with pytest.raises(IntegrityError, match="unknown kind"):
        IndexManifest.from_json(text)


def test_an_old_manifest_without_kind_is_a_base():
    data = json.loads(_manifest("base", 0).to_json())
    del data["kind"], data["seq"]
    manifest = IndexManifest.from_json(json.dumps(data))
    assert (manifest.kind, manifest.seq) == ("base", 0)


def test_live_mask_and_apply_layers_agree():
    """The lookup rule and the compaction rule give the same set, in layer order."""
    rng = np.random.default_rng(3)
    base = np.unique(rng.integers(0, 200, 80, dtype=np.uint64))
    layers = [
        (bool(i % 2 == 0), np.unique(rng.integers(0, 200, 30, dtype=np.uint64))) for i in range(5)
    ]
    probes = np.arange(200, dtype=np.uint64)
    merged = fingerprint.apply_layers(base, layers)
    assert fingerprint.live_mask(base, layers, probes).tolist() == np.isin(probes, merged).tolist()


def test_all_recipes_are_kept_by_segments(tmp_path):
    """A segment uses the base's recipes, whatever they are."""
    key = create_epoch(tmp_path / "key")
    records = make_records(20, seed=9)
    directory = tmp_path / "index"
    build_index(
        write_records(tmp_path / "b.parquet", records[:10]),
        directory,
        key,
        [RECIPES["tin_v1"], RECIPES["name_dob_v1"]],
    )
    report = _segment(tmp_path, directory, key, records[10:], ADD, "a")
    assert report.manifest.recipes == ("tin_v1", "name_dob_v1")
    assert report.keys_encrypted == 20


def test_a_partial_download_for_another_digest_starts_over(tmp_path):
    """After a compaction the base's digest changes: a partial copy of the old base is not
    resumed (it would only fail the digest check at the end), but one of the same is."""
    old = IndexManifest("e", ("tin_v1",), 4, 4, 32, "a" * 64)
    download = IndexDownload(tmp_path, old)
    download.append(0, bytes(16))
    assert IndexDownload(tmp_path, old).offset == 16
    new = IndexManifest("e", ("tin_v1",), 4, 4, 32, "b" * 64)
    assert IndexDownload(tmp_path, new).offset == 0


def test_segments_and_compaction_keep_no_plaintext_keys_unless_the_base_does(tmp_path):
    """Without --classic-keys no keys/ appears anywhere, through append and compaction."""
    key = create_epoch(tmp_path / "key")
    records = make_records(30, seed=12)
    directory = tmp_path / "index"
    build_index(write_records(tmp_path / "b.parquet", records[:20]), directory, key, [TIN])
    _segment(tmp_path, directory, key, records[20:], ADD, "a")
    assert not list(directory.rglob("keys"))
    manifest = compact(directory)
    assert manifest.classic_keys is None and not list(directory.rglob("keys"))
    assert all(_live(directory, key, records))
