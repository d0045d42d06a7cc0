"""SecretFlow's PSI (``spu``), run as a baseline from its own virtual environment.

``spu`` pins numpy<2, so it cannot live in the project's environment; the harness runs
this file with ``.venv-anchors/bin/python`` (``python3 tasks.py anchors`` creates it).
It uses nothing from the project. Usage::

    python anchors_spu.py PROTOCOL SENDER.csv RECEIVER.csv OUT_DIR

PROTOCOL is ``ecdh`` (ECDH-PSI on Curve25519) or ``rr22`` (RR22 OPRF-based PSI). Both
parties run as two processes linked over loopback TCP (brpc); the receiver (rank 0)
learns the intersection. Prints one JSON line: wall seconds of each party, their CPU
seconds, peak RSS and the intersection size.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import socket
import sys
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _party(rank: int, ports: list[int], protocol: str, source: str, out: str, conn) -> None:
    import spu.libspu.link as link
    import spu.psi as psi

    desc = link.Desc()
    for i, port in enumerate(ports):
        desc.add_party(f"party{i}", f"127.0.0.1:{port}")
    desc.recv_timeout_ms = 3_600_000
    desc.http_timeout_ms = 3_600_000
    lctx = link.create_brpc(desc, rank)
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


def main(argv: list[str]) -> int:
    protocol, sender, receiver, out_dir = argv
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ports = [_free_port(), _free_port()]
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for rank, source in ((0, receiver), (1, sender)):
        parent, child = context.Pipe(duplex=False)
        process = context.Process(
            target=_party,
            args=(rank, ports, protocol, source, str(out / f"out-{rank}.csv"), child),
        )
        process.start()
        pipes.append(parent)
        processes.append(process)
    started = time.perf_counter()
    results = [pipe.recv() for pipe in pipes]
    wall = time.perf_counter() - started
    for process in processes:
        process.join()
    print(json.dumps({"protocol": protocol, "wall_seconds": wall, "parties": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
