"""The layering the architecture promises: a core without gRPC, one owner per foreign library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

IMPORT_ALL_OF_PSI_CORE = """
import importlib, pkgutil, sys
import psi_core
for module in pkgutil.walk_packages(psi_core.__path__, "psi_core."):
    importlib.import_module(module.name)
print(sorted(name for name in sys.modules if name == "grpc" or name.startswith("grpc.")))
"""


def test_psi_core_never_imports_grpc():
    """Importing every psi_core module loads no gRPC module."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL_OF_PSI_CORE],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    assert result.stdout.strip() == "[]"


def _importers(library: str) -> set[str]:
    found = set()
    for path in ROOT.glob("psi_*/**/*.py"):
        if "psi_proto" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        if f"import {library}" in text or f"from {library}" in text:
            found.add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize(
    ("library", "owners"),
    [
        ("private_set_intersection", {"psi_core/openmined.py"}),
        (
            "cryptography.hazmat.primitives.asymmetric import ec",
            {"psi_core/curve.py", "psi_core/pki.py"},
        ),
        ("pyarrow", {"psi_core/tabular.py", "psi_core/synth/_subjects.py"}),
    ],
)
def test_each_foreign_library_has_one_owner(library, owners):
    """Only the owning module(s) import openmined-psi, cryptography's EC API and pyarrow."""
    assert _importers(library) <= owners
