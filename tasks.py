#!/usr/bin/env python3
"""Bootstrap the project's virtual environment and run one task. Needs only Python 3.11.

    python3 tasks.py demo     # end-to-end demo on synthetic data (both services, mTLS)
    python3 tasks.py test     # lint, stub drift check and the whole test suite
    python3 tasks.py bench    # benchmarks (pytest-benchmark), figures printed, JSON saved
                              # under benchmarks/results/
    python3 tasks.py population  # population-scale harness (python -m benchmarks.population)
    python3 tasks.py anchors  # create .venv-anchors with SecretFlow spu (a baseline)
    python3 tasks.py proto    # regenerate psi_proto/ from proto/

Extra arguments after the task go to the underlying command.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".installed-pyproject-sha256"


def ensure_environment() -> None:
    """Create .venv and install the project with its dev and linkage (and, where it
    installs, crypto-mb) extras when pyproject.toml changed."""
    if sys.version_info[:2] != (3, 11):
        print(
            f"note: running on Python {sys.version.split()[0]}; the project targets 3.11",
            file=sys.stderr,
        )
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest and (BIN / "python").exists():
        return
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    # The crypto-mb extra is optional: where its wheels do not install (not Linux x86-64)
    # the project still works on the openmined curve backend, and its tests are skipped.
    with_extra = subprocess.run([*pip, "-e", f"{ROOT}[dev,linkage,crypto-mb]"], check=False)
    if with_extra.returncode != 0:
        print(
            "note: the crypto-mb extra did not install; the crypto_mb curve backend is "
            "unavailable (installing without it)",
            file=sys.stderr,
        )
        subprocess.run([*pip, "-e", f"{ROOT}[dev,linkage]"], check=True)
    STAMP.write_text(digest + "\n")


ANCHORS = ROOT / ".venv-anchors"


def ensure_anchors() -> None:
    """A separate environment for SecretFlow's ``spu`` (it pins numpy<2): the harness runs
    its PSI from there as a baseline. Optional; the harness skips it when absent."""
    python = ANCHORS / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(ANCHORS)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "spu==0.9.5"], check=True)
    print(f"spu installed in {ANCHORS}")


def run(*command: str) -> None:
    completed = subprocess.run(command, cwd=ROOT, check=False)
    if completed.returncode != 0:
        sys.exit(completed.returncode)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"demo", "test", "bench", "proto", "population", "anchors"}:
        print(__doc__)
        sys.exit(2)
    task, extra = argv[0], argv[1:]
    ensure_environment()
    python = str(BIN / "python")
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    if task == "demo":
        run(str(BIN / "psi"), "demo", *extra)
    elif task == "test":
        run(str(BIN / "ruff"), "check", ".")
        run(str(BIN / "ruff"), "format", "--check", ".")
        run(python, "-m", "pytest", *extra)
    elif task == "bench":
        run(
            python,
            "-m",
            "pytest",
            "benchmarks",
            "--benchmark-enable",
            "--benchmark-autosave",
            f"--benchmark-json={ROOT / 'benchmarks' / 'results' / 'bench-latest.json'}",
            *extra,
        )
    elif task == "population":
        run(python, "-m", "benchmarks.population", *extra)
    elif task == "anchors":
        ensure_anchors()
    elif task == "proto":
        run(python, "scripts/gen_proto.py")


if __name__ == "__main__":
    main(sys.argv[1:])
