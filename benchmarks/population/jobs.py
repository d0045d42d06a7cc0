"""The jobs the harness measures, each run in its own process by ``measure.run_job``.

Keys: every population record holds one unique valid TIN and the harness uses the
``tin_v1`` recipe, so N records give exactly N index keys and costs per record are costs
per key (real records give about 2.9 keys each; the report scales by that). A query of n
subjects holds n/2 population members (the first records) and n/2 people in no
population (ITIN-range TINs), so the right answer is known in plaintext and checked.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import private_set_intersection.python as psi

from benchmarks._support import member_tin, stranger_tin, write_tin_population
from benchmarks.population import deploy
from benchmarks.population.relay import CountingRelay
from psi_core.recipes import get_recipe
from psi_proto.v1 import agency_pb2

RECIPE = "tin_v1"
SUBMIT_BATCH = 20_000
CLASSIC_FPR = 1e-9


def members_in_query(population: int, subjects: int) -> int:
    """How many of a query's ``subjects`` are population members."""
    return min(subjects // 2, population)


def subject_tins(population: int, subjects: int) -> tuple[list[str], set[str]]:
    """The query's TINs and the plaintext answer (the members' TINs)."""
    members = members_in_query(population, subjects)
    tins = [member_tin(i) for i in range(members)]
    tins += [stranger_tin(i) for i in range(subjects - members)]
    return tins, set(tins[:members])


def _key(tin: str) -> str:
    key = get_recipe(RECIPE).key({"tin": tin})
    if key is None:
        raise ValueError(f"no {RECIPE} key for TIN {tin}")
    return key


def write_population(path: str, records: int) -> int:
    """The custodian's records file (Parquet) for N records."""
    write_tin_population(Path(path), records)
    return records


def offline_job(records: str, state_dir: str, workers: int, batch_rows: int) -> dict[str, Any]:
    """``build_index`` of ``records`` into a fresh custodian state with ``workers`` processes."""
    state = deploy.CustodianState(Path(state_dir))
    epoch = state.init("custodian")
    started = time.perf_counter()
    with deploy.process_pool(workers) as pool:
        report = deploy.build_index(
            Path(records),
            state.index_dir(epoch.epoch_id),
            epoch,
            [get_recipe(RECIPE)],
            executor=pool,
            max_in_flight=2 * workers,
            batch_rows=batch_rows,
        )
    wall = time.perf_counter() - started
    return {
        "records": report.records_read,
        "keys": report.manifest.key_count,
        "index_bytes": report.manifest.size_bytes,
        "sha256": report.manifest.sha256,
        "build_seconds": wall,
        "merge_seconds": getattr(report, "merge_seconds", None),
    }


def online_job(
    work: str, state_dir: str, population: int, subjects: int, threads: int | None = None
) -> dict[str, Any]:
    """One membership query of ``subjects`` through both services over mTLS, via the relay.

    ``threads`` caps the curve threads of both services (``PSI_THREADS``); 1 gives the
    serial online path, the way it ran before the work was spread over cores.

    The agency dials a byte-counting relay in front of the custodian; its start (which
    downloads the index) and the query are measured apart. Both services run in this
    process, so ``query_cpu_seconds`` (this process's CPU from SubmitQuery to the final
    status) is the query's CPU on both sides; the job's own CPU also counts setting up,
    the download and listing the matches. The matches are checked
    against the plaintext answer.
    """
    if threads is not None:
        os.environ["PSI_THREADS"] = str(threads)
    root = Path(work) / f"online-{population}-{subjects}-{uuid.uuid4().hex[:8]}"
    pki = deploy.init_pki(root / "tls")
    authority = root / "authority"
    deploy.init_authority(authority, "bench-court")
    custodian = deploy.start_custodian(
        Path(state_dir),
        "127.0.0.1:0",
        tls=deploy.load_tls_material(pki.root, "custodian-server"),
        trusted_authorities=[authority],
    )
    relay = CountingRelay(("127.0.0.1", custodian.port))
    agency = None
    channel = None
    try:
        started = time.perf_counter()
        agency = deploy.start_agency(
            root / "agency",
            "127.0.0.1:0",
            relay.address,
            server_tls=deploy.load_tls_material(pki.root, "agency-server"),
            custodian_tls=deploy.load_tls_material(pki.root, "agency-client"),
        )
        download_seconds = time.perf_counter() - started
        after_download = relay.snapshot()
        channel = deploy.create_channel(
            f"127.0.0.1:{agency.port}", tls=deploy.load_tls_material(pki.root, "case-client")
        )
        client = deploy.AgencyClient(channel, timeout=3600)
        token = deploy.issue_authorization(
            authority,
            agency_id="agency",
            custodian_id="custodian",
            case_id=f"BENCH-{uuid.uuid4().hex[:8]}",
            legal_basis="benchmark",
            max_subjects=10**9,
            max_queries=10,
            ttl=timedelta(hours=6),
        )
        tins, expected = subject_tins(population, subjects)
        batches = [
            [
                agency_pb2.Subject(subject_id=f"S{i + j:09d}", tin=tin)
                for j, tin in enumerate(tins[i : i + SUBMIT_BATCH])
            ]
            for i in range(0, len(tins), SUBMIT_BATCH)
        ]
        header = agency_pb2.QueryHeader(
            authorization=token, mode=deploy.MODE_ENUMS["membership"], recipe=RECIPE
        )
        before_query = relay.snapshot()
        started, cpu_started = time.perf_counter(), time.process_time()
        submitted_status = client.submit(header, batches)
        submitted = time.perf_counter() - started
        status = submitted_status
        for status in client.watch(submitted_status.query_id):  # noqa: B007
            pass
        query_seconds = time.perf_counter() - started
        query_cpu_seconds = time.process_time() - cpu_started
        wire = relay.snapshot() - before_query
        if status.state != agency_pb2.QUERY_STATE_SUCCEEDED:
            raise RuntimeError(f"query failed: {status.error_code} {status.error_message}")
        found = {m.subject.tin for m in client.matches(status.query_id)}
        t = status.timings
        return {
            "population": population,
            "subjects": subjects,
            "threads": threads,
            "matches": len(found),
            "expected_matches": len(expected),
            "correct": found == expected,
            "index_download_seconds": download_seconds,
            "index_download_bytes": after_download.up + after_download.down,
            "index_download_bytes_down": after_download.down,
            "submit_seconds": submitted,
            "query_seconds": query_seconds,
            "query_cpu_seconds": query_cpu_seconds,
            "blind_seconds": t.blind_seconds,
            "evaluate_seconds": t.evaluate_seconds,
            "unblind_seconds": t.unblind_seconds,
            "lookup_seconds": t.lookup_seconds,
            "query_bytes_up": wire.up,
            "query_bytes_down": wire.down,
        }
    finally:
        if channel is not None:
            channel.close()
        if agency is not None:
            agency.stop()
        relay.close()
        custodian.stop(grace=None)


def hash_join_job(population: int, subjects: int) -> dict[str, Any]:
    """The insecure floor: a plaintext hash join of the same key strings."""
    tins, expected = subject_tins(population, subjects)
    custodian_keys = [_key(member_tin(i)) for i in range(population)]
    agency_keys = [_key(t) for t in tins]
    started = time.perf_counter()
    table = set(custodian_keys)
    build = time.perf_counter() - started
    found = [k for k in agency_keys if k in table]
    total = time.perf_counter() - started
    correct = set(found) == {_key(t) for t in expected}
    return {
        "population": population,
        "subjects": subjects,
        "build_seconds": build,
        "query_seconds": total,
        "correct": correct,
        "matches": len(found),
    }


def classic_limits(population: int, subjects: int, send_limit: int) -> str | None:
    """Why classic openmined-psi (GCS, fpr 1e-9) cannot serve this size, or None."""
    hash_range = population * subjects / CLASSIC_FPR
    if hash_range >= 2**63:
        return f"GCS hash range N*n/fpr = {hash_range:.2e} overflows int64"
    setup_bytes = classic_setup_bytes(population, subjects)
    if setup_bytes >= deploy.PROTOBUF_MESSAGE_LIMIT:
        return f"setup ~{setup_bytes / 2**30:.1f} GiB passes protobuf's 2 GiB limit"
    if setup_bytes >= send_limit:
        return (
            f"setup ~{setup_bytes / 2**20:.0f} MiB passes the custodian's "
            f"{send_limit / 2**20:.0f} MiB message limit"
        )
    return None


def classic_setup_bytes(population: int, subjects: int) -> float:
    """Golomb-coded set: about log2(n/fpr) + 2 bits a key (estimate; the library's own)."""
    import math

    return population * (math.log2(max(subjects, 1) / CLASSIC_FPR) + 2) / 8


def classic_job(population: int, subjects: int) -> dict[str, Any]:
    """Classic openmined-psi as a black box: setup over all N keys for every query."""
    tins, expected = subject_tins(population, subjects)
    custodian_keys = [_key(member_tin(i)) for i in range(population)]
    agency_keys = [_key(t) for t in tins]
    secret = bytes(range(1, 33))
    started = time.perf_counter()
    server = psi.server.CreateFromKey(secret, True)
    setup = server.CreateSetupMessage(
        CLASSIC_FPR, len(agency_keys), custodian_keys, psi.DataStructure.GCS
    )
    setup_bytes = len(setup.SerializeToString())
    setup_seconds = time.perf_counter() - started
    client = psi.client.CreateWithNewKey(True)
    request = client.CreateRequest(agency_keys)
    response = server.ProcessRequest(request)
    found = client.GetIntersection(setup, response)
    total = time.perf_counter() - started
    return {
        "population": population,
        "subjects": subjects,
        "setup_seconds": setup_seconds,
        "query_seconds": total,
        "setup_bytes": setup_bytes,
        "request_bytes": len(request.SerializeToString()),
        "response_bytes": len(response.SerializeToString()),
        "correct": {agency_keys[i] for i in found} >= {_key(t) for t in expected},
        "matches": len(found),
    }


def write_key_csv(path: Path, keys: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key"])
        writer.writerows([k] for k in keys)


def _run_anchors(
    anchors_python: str, protocol: str, root: Path, sender: list[str], receiver: list[str]
) -> dict[str, Any]:
    """Write both parties' key files under ``root``, run ``anchors_spu.py PROTOCOL`` from
    spu's environment, and return the JSON line it printed last."""
    root.mkdir(parents=True, exist_ok=True)
    write_key_csv(root / "sender.csv", sender)
    write_key_csv(root / "receiver.csv", receiver)
    script = Path(__file__).with_name("anchors_spu.py")
    completed = subprocess.run(
        [
            anchors_python,
            str(script),
            protocol,
            str(root / "sender.csv"),
            str(root / "receiver.csv"),
            str(root / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"spu {protocol} failed: {completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _population_keys(population: int) -> list[str]:
    return [_key(member_tin(i)) for i in range(population)]


def spu_job(
    anchors_python: str, work: str, population: int, subjects: int, protocol: str
) -> dict[str, Any]:
    """SecretFlow ``spu`` PSI on the same keys, from its own environment (two processes)."""
    tins, expected = subject_tins(population, subjects)
    result = _run_anchors(
        anchors_python,
        protocol,
        Path(work) / f"spu-{protocol}-{population}-{subjects}",
        _population_keys(population),
        [_key(t) for t in tins],
    )
    receiver = result["parties"][0]
    return {
        "population": population,
        "subjects": subjects,
        "protocol": protocol,
        "query_seconds": max(p["wall_seconds"] for p in result["parties"]),
        "process_seconds": result["wall_seconds"],
        "cpu_seconds": sum(p["cpu_seconds"] for p in result["parties"]),
        "peak_rss_bytes": max(p["peak_rss_bytes"] for p in result["parties"]),
        "matches": receiver["intersection_count"],
        "correct": receiver["intersection_count"] == len(expected),
    }


def spu_cache_job(anchors_python: str, work: str, population: int) -> dict[str, Any]:
    """SecretFlow ``spu``'s unbalanced-PSI server cache build on the population's keys.

    Only ``MODE_OFFLINE_GEN_CACHE`` (ECDH-OPRF on FourQ over every key, one process),
    the counterpart of ``offline_job``'s index build; CPU includes spu's input sort.
    """
    result = _run_anchors(
        anchors_python,
        "ub-cache",
        Path(work) / f"spu-ub-cache-{population}",
        _population_keys(population),
        [],
    )
    server = result["parties"][0]
    if server["items"] != population:
        raise RuntimeError(f"spu cache holds {server['items']} entries, expected {population}")
    return {
        "population": population,
        "keys": server["items"],
        "build_seconds": server["wall_seconds"],
        "cpu_seconds": server["cpu_seconds"],
        "peak_rss_bytes": server["peak_rss_bytes"],
        "cache_bytes": server["cache_bytes"],
    }
