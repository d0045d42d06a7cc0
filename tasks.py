#!/usr/bin/env python3
"""Bootstrap the project's virtual environment and run one task. Needs only Python 3.11.

    python3 tasks.py demo     # end-to-end demo on synthetic data (both services, mTLS)
    python3 tasks.py test     # lint, stub drift check and the whole test suite
    python3 tasks.py bench    # benchmarks (pytest-benchmark), figures printed and saved
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
    """Create .venv and install the project with its dev and linkage extras when
    pyproject.toml changed."""
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
    subprocess.run([*pip, "-e", f"{ROOT}[dev,linkage]"], check=True)
    STAMP.write_text(digest + "\n")


def run(*command: str) -> None:
    completed = subprocess.run(command, cwd=ROOT, check=False)
    if completed.returncode != 0:
        sys.exit(completed.returncode)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"demo", "test", "bench", "proto"}:
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
            *extra,
        )
    elif task == "proto":
        run(python, "scripts/gen_proto.py")


if __name__ == "__main__":
    main(sys.argv[1:])
