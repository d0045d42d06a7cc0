"""The deployment a load run drives: PKI, authority, index, and the services as processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import start_listening

TOOLS = {
    "psi": "psi_tools.cli",
    "psi-custodian": "psi_custodian.cli",
    "psi-agency": "psi_agency.cli",
}


def run_tool(tool: str, *args: object) -> str:
    done = subprocess.run(
        [sys.executable, "-m", TOOLS[tool], *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{tool} {args[0]} failed: {done.stderr[-2000:]}")
    return done.stdout


@dataclass
class Service:
    """A service process, the address it listens on, and its memory samples."""

    name: str
    process: subprocess.Popen[str]
    address: str
    rss: list[tuple[float, int]] = field(default_factory=list)

    def rss_bytes(self) -> int:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


def start_service(name: str, tool: str, *args: object, log: Path) -> Service:
    """Start a service whose log goes to ``log`` (a file, so a busy log never blocks it)."""
    log.unlink(missing_ok=True)
    process, address = start_listening(TOOLS[tool], *args, log=log)
    return Service(name, process, address)


@dataclass
class Deployment:
    root: Path
    tls: Path
    tokens: list[Path]
    custodian: Service
    agencies: list[Service]

    def services(self) -> list[Service]:
        return [self.custodian, *self.agencies]


def deploy(root: Path, *, population: Path, agencies: int, workers: int) -> Deployment:
    tls, authority, state = root / "tls", root / "authority", root / "custodian"
    run_tool("psi", "pki", "init", "--out", tls)
    run_tool("psi", "authority", "init", "--out", authority, "--issuer", "load-court")
    run_tool("psi-custodian", "init", "--state", state)
    run_tool(
        "psi-custodian", "build-index", "--state", state, "--records", population,
        "--workers", workers,
    )  # fmt: skip
    tokens = []
    for i in range(agencies):
        token = root / f"agency-{i}.token"
        run_tool(
            "psi", "authority", "issue", "--key", authority, "--agency-id", "agency",
            "--custodian-id", "custodian", "--case-id", f"LOAD-{i}", "--legal-basis", "load test",
            "--max-subjects", 10**12, "--max-queries", 10**8, "--ttl", "2d", "--out", token,
        )  # fmt: skip
        tokens.append(token)
    custodian = start_service(
        "custodian", "psi-custodian", "serve", "--state", state, "--listen", "127.0.0.1:0",
        "--tls-dir", tls, "--trust", authority, log=root / "custodian.log",
    )  # fmt: skip
    started = [_start_agency(root, i, custodian.address, tls) for i in range(agencies)]
    return Deployment(root, tls, tokens, custodian, started)


def _start_agency(root: Path, number: int, custodian: str, tls: Path) -> Service:
    return start_service(
        f"agency-{number}", "psi-agency", "serve", "--state", root / f"agency-{number}",
        "--listen", "127.0.0.1:0", "--custodian", custodian, "--tls-dir", tls,
        log=root / f"agency-{number}.log",
    )  # fmt: skip


class MemorySampler:
    """Samples every service's RSS once a second until stopped."""

    def __init__(self, services: list[Service], interval: float = 1.0) -> None:
        self._services = services
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic() - self.started
            for service in self._services:
                service.rss.append((now, service.rss_bytes()))
            self._stop.wait(self._interval)
