"""Building the encrypted index: inline, in a process pool, on a Dask cluster, resumed."""

from __future__ import annotations

import distributed
import numpy as np
import pytest

from psi_core.errors import RowError
from psi_core.index import (
    EncryptedIndex,
    build_index,
    create_epoch,
    encrypt_shard,
    iter_index_keys,
    process_pool,
    read_manifest,
    shard_keys,
)
from psi_core.protocol import fingerprint
from psi_core.recipes import RECIPES, get_recipe
from tests.factories import make_records, write_records

ALL = list(RECIPES.values())


@pytest.fixture
def records(tmp_path):
    return write_records(tmp_path / "records.csv", make_records(250, seed=4))


@pytest.fixture
def epoch(tmp_path):
    return create_epoch(tmp_path / "epoch")


def _expected(rows, epoch, recipes):
    keys = shard_keys(rows, recipes)
    return fingerprint.sorted_unique([encrypt_shard(epoch.secret, keys)])


def test_inline_build_indexes_every_recipe_key(tmp_path, records, epoch):
    """The index holds exactly b·H(k) for every key of every record, sorted and unique."""
    report = build_index(records, tmp_path / "index", epoch, ALL, batch_rows=64, classic_keys=True)
    index = EncryptedIndex.open(tmp_path / "index")
    rows = make_records(250, seed=4)
    assert index.values.tolist() == _expected(rows, epoch, ALL).tolist()
    assert report.records_read == 250
    assert report.manifest.record_count == 250
    assert report.manifest.recipes == tuple(r.id for r in ALL)
    assert sorted(iter_index_keys(tmp_path / "index")) == shard_keys(rows, ALL)


def test_no_plaintext_key_is_kept_unless_asked(tmp_path, records, epoch):
    """By default the index keeps no plaintext key (no keys/, manifest says so); with
    classic_keys the manifest counts the kept keys per recipe, and a rebuild without it
    removes them again."""
    plain = build_index(records, tmp_path / "index", epoch, ALL, batch_rows=64)
    assert not (tmp_path / "index" / "keys").exists()
    assert plain.manifest.classic_keys is None
    assert not read_manifest(tmp_path / "index").classic_setup_available
    assert list(iter_index_keys(tmp_path / "index")) == []

    kept = build_index(records, tmp_path / "index", epoch, ALL, batch_rows=64, classic_keys=True)
    keys = list(iter_index_keys(tmp_path / "index"))
    manifest = read_manifest(tmp_path / "index")
    assert manifest == kept.manifest and manifest.classic_setup_available
    for recipe in ALL:
        assert manifest.classic_key_count(recipe.id) == sum(
            key.startswith(recipe.id + "|") for key in keys
        )
    assert manifest.classic_key_count("") == len(keys) > 0

    build_index(records, tmp_path / "index", epoch, ALL, batch_rows=64)
    assert not (tmp_path / "index" / "keys").exists()
    assert read_manifest(tmp_path / "index").classic_keys is None


def test_process_pool_build_equals_inline_build(tmp_path, records, epoch):
    """Two worker processes produce the byte-identical index."""
    inline = build_index(records, tmp_path / "a", epoch, ALL, batch_rows=64)
    with process_pool(2) as pool:
        pooled = build_index(
            records, tmp_path / "b", epoch, ALL, executor=pool, max_in_flight=4, batch_rows=64
        )
    assert pooled.manifest.sha256 == inline.manifest.sha256


def test_dask_local_cluster_build_equals_inline_build(tmp_path, records, epoch):
    """The same shard function on a real Dask LocalCluster gives the same index."""
    inline = build_index(records, tmp_path / "a", epoch, ALL, batch_rows=64)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dask_report = build_index(
            records, tmp_path / "b", epoch, ALL, executor=client, max_in_flight=4, batch_rows=64
        )
    assert dask_report.manifest.sha256 == inline.manifest.sha256


class _FailAfter:
    """An executor that dies after a number of shards, like a killed build."""

    def __init__(self, shards: int) -> None:
        self.left = shards

    def submit(self, fn, *args):
        if self.left == 0:
            raise KeyboardInterrupt("simulated crash")
        self.left -= 1
        value = fn(*args)
        return type("Done", (), {"result": lambda self: value, "done": lambda self: True})()


def test_interrupted_build_resumes_without_recomputing(tmp_path, records, epoch):
    """After a crash, finished shards are reused and the result is identical."""
    reference = build_index(records, tmp_path / "ref", epoch, ALL, batch_rows=64)
    with pytest.raises(KeyboardInterrupt):
        build_index(records, tmp_path / "index", epoch, ALL, executor=_FailAfter(2), batch_rows=64)
    resumed = build_index(records, tmp_path / "index", epoch, ALL, batch_rows=64)
    assert resumed.shards_reused == 2
    assert resumed.manifest.sha256 == reference.manifest.sha256


def test_changed_input_discards_old_shards(tmp_path, epoch):
    """Shards from a different input file are not reused."""
    path = write_records(tmp_path / "r.csv", make_records(100, seed=1))
    with pytest.raises(KeyboardInterrupt):
        build_index(path, tmp_path / "index", epoch, ALL, executor=_FailAfter(1), batch_rows=32)
    write_records(path, make_records(120, seed=2))
    report = build_index(path, tmp_path / "index", epoch, ALL, batch_rows=32)
    assert report.shards_reused == 0
    assert report.records_read == 120


def test_bad_row_refuses_the_build_with_its_line(tmp_path, epoch):
    """A malformed row stops the build (refuse mode) and names its line; no index appears."""
    path = tmp_path / "bad.csv"
    good = write_records(tmp_path / "good.csv", make_records(5)).read_text().splitlines()
    path.write_text("\n".join([*good[:3], "only,three,fields", *good[3:]]) + "\n")
    with pytest.raises(RowError) as caught:
        build_index(path, tmp_path / "index", epoch, ALL)
    assert caught.value.line == 4
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_bad_row_is_skipped_and_reported_in_skip_mode(tmp_path, epoch):
    """In skip mode the bad row is left out and reported; the others are indexed."""
    path = tmp_path / "bad.csv"
    good = write_records(tmp_path / "good.csv", make_records(5)).read_text().splitlines()
    path.write_text("\n".join([*good[:3], "only,three,fields", *good[3:]]) + "\n")
    report = build_index(path, tmp_path / "index", epoch, ALL, on_error="skip")
    assert report.records_read == 5
    assert report.rows_skipped == 1
    assert [e.line for e in report.row_errors] == [4]


def test_single_recipe_index_holds_only_that_recipe(tmp_path, records, epoch):
    """Building with tin_v1 alone indexes only TIN keys."""
    build_index(records, tmp_path / "index", epoch, [get_recipe("tin_v1")], classic_keys=True)
    keys = list(iter_index_keys(tmp_path / "index"))
    assert keys
    assert all(k.startswith("tin_v1|") for k in keys)
    assert len(EncryptedIndex.open(tmp_path / "index")) == len(keys)


def test_empty_recipe_list_is_refused(tmp_path, records, epoch):
    """An index needs at least one recipe."""
    from psi_core.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        build_index(records, tmp_path / "index", epoch, [])


def test_encrypt_shard_is_deterministic_and_sorted(epoch):
    """The shard function gives the same sorted fingerprints every time."""
    keys = [f"k{i}" for i in range(50)]
    first, second = encrypt_shard(epoch.secret, keys), encrypt_shard(epoch.secret, keys)
    assert np.array_equal(first, second)
    assert np.all(first[1:] >= first[:-1])
