"""The index build on Dask: the epoch secret never rides in a task, and a remote
scheduler needs TLS from the project's PKI."""

from __future__ import annotations

import distributed
import pytest
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.protocol import pickle as dask_pickle
from distributed.security import Security

from psi_core.errors import PreconditionError
from psi_core.index import build_index, create_epoch, dask_cluster
from psi_core.recipes import RECIPES
from psi_tools.dev_pki import init_pki
from tests.factories import make_records, write_records

ALL = list(RECIPES.values())


@pytest.fixture
def records(tmp_path):
    return write_records(tmp_path / "records.csv", make_records(120, seed=5))


@pytest.fixture
def epoch(tmp_path):
    return create_epoch(tmp_path / "epoch")


class TaskArguments(SchedulerPlugin):
    """Keeps the pickled run spec (function and arguments) of every task the scheduler
    is given, exactly what a scheduler operator, its logs or a spill could see."""

    def __init__(self) -> None:
        self.pickled: list[bytes] = []

    def update_graph(self, scheduler, *, tasks, **kwargs) -> None:
        for key in tasks:
            state = scheduler.tasks.get(key)
            if state is not None and state.run_spec is not None:
                self.pickled.append(dask_pickle.dumps(state.run_spec))


class SubmitOnly:
    """The same Dask client seen as a bare executor (no ``scatter``): the old path."""

    def __init__(self, client: distributed.Client) -> None:
        self._client = client

    def submit(self, fn, /, *args):
        return self._client.submit(fn, *args)


def _carries_secret(pickled: list[bytes], secret: bytes) -> bool:
    return any(secret in blob or secret.hex().encode() in blob for blob in pickled)


@pytest.mark.parametrize("bare", [False, True], ids=["dask-client", "control-bare-executor"])
def test_no_task_carries_the_epoch_secret(tmp_path, records, epoch, bare):
    """With the Dask client the secret is scattered once and no task's pickled arguments
    hold it; the control (the same cluster driven as a bare executor, as before the fix)
    shows that the check does see a secret passed per task."""
    plugin = TaskArguments()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        cluster.scheduler.add_plugin(plugin)
        executor = SubmitOnly(client) if bare else client
        build_index(records, tmp_path / "index", epoch, ALL, executor=executor, batch_rows=40)
    assert len(plugin.pickled) >= 3, "every shard should have been a task"
    assert _carries_secret(plugin.pickled, epoch.secret) is bare


def _node_security(pki) -> Security:
    node = (str(pki.dask_node_cert), str(pki.dask_node_key))
    return Security(
        tls_ca_file=str(pki.ca_cert),
        tls_scheduler_cert=node[0],
        tls_scheduler_key=node[1],
        tls_worker_cert=node[0],
        tls_worker_key=node[1],
        tls_client_cert=node[0],
        tls_client_key=node[1],
        require_encryption=True,
    )


def test_tls_scheduler_over_the_pki_layout_builds_the_same_index(tmp_path, records, epoch):
    """`psi pki init` writes dask-node and dask-client certificates; a TLS cluster using
    them builds the byte-identical index through ``dask_cluster(tls://…, tls_dir=…)``."""
    pki = init_pki(tmp_path / "tls")
    inline = build_index(records, tmp_path / "a", epoch, ALL, batch_rows=40)
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tls://",
        host="127.0.0.1",
        security=_node_security(pki),
        dashboard_address=None,
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        with dask_cluster(address, tls_dir=pki.root) as (client, workers):
            assert workers == 2
            report = build_index(
                records, tmp_path / "b", epoch, ALL, executor=client, batch_rows=40
            )
    assert report.manifest.sha256 == inline.manifest.sha256


@pytest.mark.parametrize(
    ("address", "with_tls_dir", "phrase"),
    [
        ("tcp://10.20.30.40:8786", False, "allowed only on a loopback address"),
        ("10.20.30.40:8786", False, "allowed only on a loopback address"),
        ("tcp://scheduler.example:8786", False, "allowed only on a loopback address"),
        ("tls://10.20.30.40:8786", False, "pass --dask-tls-dir"),
        ("tcp://127.0.0.1:8786", True, "needs a tls:// scheduler address"),
    ],
    ids=["tcp-remote", "no-scheme-remote", "tcp-hostname", "tls-without-pki", "tcp-with-pki"],
)
def test_unsafe_scheduler_addresses_are_refused_before_connecting(
    tmp_path, address, with_tls_dir, phrase
):
    """Plaintext off loopback (and TLS without certificates) is refused at once: no
    connection is attempted, so nothing about the build reaches such a scheduler."""
    tls_dir = init_pki(tmp_path / "tls").root if with_tls_dir else None
    with (
        pytest.raises(PreconditionError, match=phrase),
        dask_cluster(address, tls_dir=tls_dir),
    ):
        pytest.fail("connected to an unsafe scheduler")


def test_tls_directory_without_dask_certificates_is_named(tmp_path):
    """A PKI from before the Dask certificates existed: the missing file is named."""
    pki = init_pki(tmp_path / "tls")
    pki.dask_client_key.unlink()
    with (
        pytest.raises(PreconditionError, match=r"dask-client\.key is missing"),
        dask_cluster("tls://10.20.30.40:8786", tls_dir=pki.root),
    ):
        pytest.fail("connected without a client key")
