"""SecretFlow's PSI (``spu``), run as a baseline from its own virtual environment.

``spu`` pins numpy<2, so it cannot live in the project's environment; the harness runs
this file with ``.venv-anchors/bin/python`` (``python3 tasks.py anchors`` creates it).
It uses nothing from the project. Usage::

    python anchors_spu.py PROTOCOL SENDER.csv RECEIVER.csv OUT_DIR

PROTOCOL is one of:

``ecdh``
    Balanced ECDH-PSI on Curve25519.
``rr22``
    Balanced RR22 OPRF-based PSI.
``ub-cache``
    Only the server's offline cache generation of spu's unbalanced PSI (ECDH-OPRF on
    FourQ, spu's only choice for it): the server evaluates the OPRF on every key of
    SENDER.csv with its secret key and writes the cache to ``OUT_DIR/server-cache``.
    One process with a one-party in-memory link (spu needs a link object but sends
    nothing); RECEIVER.csv is ignored. Checks the cache holds one entry per key.
``ub-online``
    ``ub-cache`` (untimed), then the two-party rest of the unbalanced protocol: the
    server sends the cache to the client (the offline transfer, reported as
    ``transfer_seconds``), then the online phase on RECEIVER.csv's keys, timed alone.

For ``ecdh``, ``rr22`` and ``ub-online`` both parties run as two processes linked over
loopback TCP (brpc); the receiver (rank 0, the client in ``ub-online``) learns the
intersection. Prints one JSON line: wall seconds of each party, their CPU seconds, peak
RSS and the intersection size (``ub-cache``: the cache's entry count and bytes instead).
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import socket
import sys
import time
from pathlib import Path

CACHE_FILES = ("ub_psi_cache.bin", "ub_psi_cache.meta")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _brpc(rank: int, ports: list[int]):
    import spu.libspu.link as link

    desc = link.Desc()
    for i, port in enumerate(ports):
        desc.add_party(f"party{i}", f"127.0.0.1:{port}")
    desc.recv_timeout_ms = 3_600_000
    desc.http_timeout_ms = 3_600_000
    return link.create_brpc(desc, rank)


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _party(rank: int, ports: list[int], protocol: str, source: str, out: str, conn) -> None:
    import spu.psi as psi

    lctx = _brpc(rank, ports)
    if protocol == "ecdh":
        conf = psi.PsiProtocolConfig(
            protocol=psi.PsiProtocol.PROTOCOL_ECDH,
            receiver_rank=0,
            broadcast_result=False,
            ecdh_params=psi.EcdhParams(curve=psi.EllipticCurveType.CURVE_25519),
        )
    else:
        conf = psi.PsiProtocolConfig(
            protocol=psi.PsiProtocol.PROTOCOL_RR22, receiver_rank=0, broadcast_result=False
        )
    config = psi.PsiExecuteConfig(
        protocol_conf=conf,
        input_params=psi.InputParams(path=source, selected_keys=["key"], keys_unique=True),
        output_params=psi.OutputParams(path=out, disable_alignment=True),
    )
    started = time.perf_counter()
    report = psi.psi_execute(config, lctx)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    lctx.stop_link()
    conn.send(
        {
            "rank": rank,
            "wall_seconds": wall,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_bytes": usage.ru_maxrss * 1024,
            "intersection_count": int(report.intersection_count),
            "original_count": int(report.original_count),
        }
    )


def _ub_config(mode: str, role: str, cache: str, source: str = "", out: str = ""):
    """spu's ``UbPsiExecuteConfig``; ``out`` set means this side receives the result."""
    import spu.psi as psi

    return psi.UbPsiExecuteConfig(
        mode=psi.parse_ub_psi_mode(mode),
        role=psi.parse_ub_psi_role(role),
        client_receive_result=bool(out),
        cache_path=cache,
        input_params=psi.InputParams(path=source, selected_keys=["key"], keys_unique=True),
        output_params=psi.OutputParams(path=out, disable_alignment=True),
    )


def _count_keys(source: str) -> int:
    with open(source, "rb") as handle:
        return sum(1 for line in handle if line.strip()) - 1


def _build_cache(source: str, cache: Path) -> dict:
    """MODE_OFFLINE_GEN_CACHE as the server, alone, measured; checks the cache written.

    spu's ``ub_psi_execute`` crashes on ``None`` for the link, but the cache generation
    never sends, so a one-party in-memory context satisfies it. The server's OPRF key is
    drawn at random and kept in the cache's meta file, where the later modes read it.
    spu sorts the input with the ``sort`` program (a child process), so its CPU is
    counted too (``sort_cpu_seconds``).
    """
    import spu.libspu.link as link
    import spu.psi as psi

    cache.mkdir(parents=True, exist_ok=True)
    desc = link.Desc()
    desc.add_party("server", "127.0.0.1:0")
    lctx = link.create_mem(desc, 0)
    config = _ub_config("MODE_OFFLINE_GEN_CACHE", "ROLE_SERVER", str(cache), source)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cpu_self, cpu_children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    report = psi.ub_psi_execute(config, lctx)
    wall = time.perf_counter() - started
    cpu_self = _cpu(resource.RUSAGE_SELF) - cpu_self
    cpu_children = _cpu(resource.RUSAGE_CHILDREN) - cpu_children
    lctx.stop_link()

    meta = json.loads((cache / "ub_psi_cache.meta").read_text())
    items, item_len = int(meta["itemCount"]), int(meta["itemLen"])
    data_bytes = (cache / "ub_psi_cache.bin").stat().st_size
    keys = _count_keys(source)
    if not (items == keys == int(report.original_count)) or (items and data_bytes % items):
        raise RuntimeError(
            f"cache holds {items} entries ({data_bytes} bytes), spu read "
            f"{report.original_count} keys, {source} has {keys}"
        )
    return {
        "rank": 0,
        "wall_seconds": wall,
        "cpu_seconds": cpu_self + cpu_children,
        "sort_cpu_seconds": cpu_children,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_bytes": rss_before,
        "items": items,
        "item_compare_bytes": item_len,
        "cache_bytes": sum((cache / name).stat().st_size for name in CACHE_FILES),
        "cache_dir_bytes": sum(p.stat().st_size for p in cache.iterdir() if p.is_file()),
    }


def _cache_party(rank: int, ports: list[int], source: str, cache: str, conn) -> None:
    conn.send(_build_cache(source, Path(cache)))


def _ub_party(rank: int, ports: list[int], source: str, work: str, conn) -> None:
    """One side of the unbalanced protocol after the cache exists: transfer, then online.

    Rank 0 is the client (receiver) and rank 1 the server, whose cache is ``work``'s
    ``server-cache``; the client keeps the received copy in ``work/client-cache``.
    """
    import spu.psi as psi

    server = rank == 1
    role = "ROLE_SERVER" if server else "ROLE_CLIENT"
    cache = str(Path(work) / ("server-cache" if server else "client-cache"))
    out = "" if server else str(Path(work) / "out-0.csv")
    lctx = _brpc(rank, ports)
    started = time.perf_counter()
    transfer = _ub_config("MODE_OFFLINE_TRANSFER_CACHE", role, cache, source if server else "")
    psi.ub_psi_execute(transfer, lctx)
    transfer_wall = time.perf_counter() - started
    cpu = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    report = psi.ub_psi_execute(_ub_config("MODE_ONLINE", role, cache, source, out), lctx)
    wall = time.perf_counter() - started
    cpu = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN) - cpu
    lctx.stop_link()
    conn.send(
        {
            "rank": rank,
            "role": role,
            "transfer_seconds": transfer_wall,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "intersection_count": int(report.intersection_count),
            "original_count": int(report.original_count),
        }
    )


def _run_parties(target, rank_args: list[tuple]) -> tuple[float, list[dict]]:
    """Runs ``target(rank, ports, *rank_args[rank], pipe)`` in one process per rank."""
    ports = [_free_port() for _ in rank_args]
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for rank, args in enumerate(rank_args):
        parent, child = context.Pipe(duplex=False)
        process = context.Process(target=target, args=(rank, ports, *args, child))
        process.start()
        pipes.append(parent)
        processes.append(process)
    started = time.perf_counter()
    results = [pipe.recv() for pipe in pipes]
    wall = time.perf_counter() - started
    for process in processes:
        process.join()
    return wall, results


def main(argv: list[str]) -> int:
    protocol, sender, receiver, out_dir = argv
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if protocol in ("ecdh", "rr22"):
        sources = (receiver, sender)
        wall, results = _run_parties(
            _party,
            [(protocol, sources[rank], str(out / f"out-{rank}.csv")) for rank in (0, 1)],
        )
    elif protocol in ("ub-cache", "ub-online"):
        # The build runs in a process of its own too: spu logs to stdout until it exits.
        wall, results = _run_parties(_cache_party, [(sender, str(out / "server-cache"))])
        if protocol == "ub-online":
            built = results[0]
            wall, results = _run_parties(_ub_party, [(receiver, str(out)), (sender, str(out))])
            results[1]["cache_build_seconds"] = built["wall_seconds"]
    else:
        raise SystemExit(f"unknown protocol {protocol!r}")
    print(json.dumps({"protocol": protocol, "wall_seconds": wall, "parties": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
