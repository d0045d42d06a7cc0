"""The layering the architecture promises.

- ``psi_core`` imports neither gRPC, nor ``psi_tools``, nor a service;
- the services import the core through its package surfaces, never a private submodule;
- each foreign library has one owner (a module, or a short list with a reason each).

Imports are read with :mod:`ast`, so ``import x.y``, ``from x.y import z``, aliases and
imports nested in functions all count.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("psi_custodian", "psi_agency", "psi_rpc")
CORE_PACKAGES = (
    "psi_core",
    "psi_core.protocol",
    "psi_core.index",
    "psi_core.policy",
    "psi_core.io",
    "psi_core.recipes",
    "psi_core.errors",
)

IMPORT_ALL_OF_PSI_CORE = """
import importlib, pkgutil, sys
import psi_core
for module in pkgutil.walk_packages(psi_core.__path__, "psi_core."):
    importlib.import_module(module.name)
print(sorted(
    name for name in sys.modules
    if name.split(".")[0] in {"grpc", "psi_tools", "psi_custodian", "psi_agency", "psi_rpc"}
))
"""


def imported_modules(source: str) -> Iterator[str]:
    """Every module name an import statement in ``source`` names (``from a import b`` gives
    ``a`` and ``a.b``, since ``b`` may be a submodule)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"


def _python_files(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from (ROOT / package).rglob("*.py")


def _importers(library: str) -> set[str]:
    found = set()
    for path in _python_files("psi_core", "psi_tools", *SERVICES):
        modules = imported_modules(path.read_text(encoding="utf-8"))
        if any(m == library or m.startswith(library + ".") for m in modules):
            found.add(str(path.relative_to(ROOT)))
    return found


def test_import_parser_sees_every_form():
    """The parser finds plain, dotted, from-, aliased and nested imports."""
    source = (
        "import a\nimport b.c as d\nfrom e.f import g as h\n"
        "def k():\n    from m import n\n    import o.p\n"
    )
    found = set(imported_modules(source))
    assert {"a", "b.c", "e.f", "e.f.g", "m", "m.n", "o.p"} <= found


def test_psi_core_imports_no_grpc_tool_or_service_when_loaded():
    """Importing every psi_core module loads no gRPC, psi_tools or service module."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL_OF_PSI_CORE],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "forbidden", ["grpc", "psi_tools", "psi_custodian", "psi_agency", "psi_rpc"]
)
def test_psi_core_source_never_names(forbidden):
    """No psi_core source file imports ``forbidden``, even inside a function."""
    offenders = {
        str(path.relative_to(ROOT))
        for path in _python_files("psi_core")
        for module in imported_modules(path.read_text(encoding="utf-8"))
        if module == forbidden or module.startswith(forbidden + ".")
    }
    assert offenders == set()


def test_services_import_the_core_through_package_surfaces():
    """Services and tools name psi_core packages (``psi_core.protocol``), not their modules."""
    offenders = set()
    for path in _python_files("psi_tools", *SERVICES):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("psi_core")
            ):
                if node.module not in CORE_PACKAGES:
                    offenders.add(f"{path.relative_to(ROOT)}: from {node.module}")
            elif isinstance(node, ast.Import):
                offenders.update(
                    f"{path.relative_to(ROOT)}: import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("psi_core.") and alias.name not in CORE_PACKAGES
                )
    assert offenders == set()


def test_services_use_psi_tools_only_for_truth_scoring():
    """Nothing run in production imports the tools, except the agency CLI's ``--truth``."""
    importers = set()
    for path in _python_files(*SERVICES):
        if any(m.startswith("psi_tools") for m in imported_modules(path.read_text("utf-8"))):
            importers.add(str(path.relative_to(ROOT)))
    assert importers <= {"psi_agency/cli.py"}


def test_services_leave_array_arithmetic_to_the_core():
    """No module of a service imports numpy: match arithmetic lives in psi_core.protocol."""
    offenders = set()
    for path in _python_files(*SERVICES):
        if any(
            m == "numpy" or m.startswith("numpy.")
            for m in imported_modules(path.read_text("utf-8"))
        ):
            offenders.add(str(path.relative_to(ROOT)))
    assert offenders == set()


@pytest.mark.parametrize(
    ("library", "owners"),
    [
        ("private_set_intersection", {"psi_core/protocol/openmined.py"}),
        (
            "cryptography.hazmat.primitives.asymmetric.ec",
            {"psi_core/protocol/curve.py", "psi_tools/dev_pki.py"},
        ),
        ("cryptography.x509", {"psi_core/policy/identity.py", "psi_tools/dev_pki.py"}),
        (
            "cryptography.hazmat.primitives.asymmetric.ed25519",
            {"psi_core/policy/authorization.py", "psi_tools/authority.py"},
        ),
        ("pyarrow", {"psi_core/io/tabular.py", "psi_tools/synth/_subjects.py"}),
        ("tqdm", {"psi_rpc/cli.py"}),
        ("openpyxl", {"psi_core/io/xlsx.py"}),
        ("distributed", {"psi_core/index/build.py"}),
        ("dask", {"psi_core/index/build.py"}),
        ("tenacity", {"psi_agency/retry.py"}),
        ("pseudopeople", {"psi_tools/pseudopeople_corpus.py"}),
        ("anyascii", {"psi_core/recipes/_tolerant.py"}),
        ("nicknames", {"psi_core/recipes/_nicknames.py"}),
        ("gmpy2", {"psi_core/protocol/p256.py"}),
        ("ctypes", {"psi_core/protocol/crypto_mb.py"}),
    ],
)  # fmt: skip
def test_each_foreign_library_has_one_owner(library, owners):
    """Only the owning module(s) import each foreign library (ctypes: Intel's crypto_mb)."""
    assert _importers(library) <= owners
