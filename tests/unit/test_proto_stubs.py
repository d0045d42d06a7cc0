"""The committed stubs under psi_proto/ are exactly what proto/ generates."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_proto"] = module
    spec.loader.exec_module(module)
    return module


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "psi_proto").rglob("*"))
        if p.is_file() and p.suffix in {".py", ".pyi"}
    }


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    """Regenerating from proto/ reproduces psi_proto/ byte for byte (run `tasks.py proto`)."""
    _load_generator().generate(tmp_path)
    fresh, committed = _tree(tmp_path), _tree(ROOT)
    assert sorted(fresh) == sorted(committed)
    drifted = [name for name in fresh if fresh[name] != committed[name]]
    assert drifted == [], f"stale stubs: {drifted}; run `python3 tasks.py proto`"


def test_every_proto_message_field_is_documented():
    """Every message and field in proto/ has a comment (the API's documentation lives there)."""
    undocumented = []
    for proto in sorted((ROOT / "proto").rglob("*.proto")):
        lines = proto.read_text().splitlines()
        for number, line in enumerate(lines):
            stripped = line.strip()
            is_field = (
                stripped.endswith(";")
                and "=" in stripped
                and not stripped.startswith(("option", "syntax", "package", "import", "//"))
            )
            is_decl = stripped.startswith(("message ", "service ", "enum ", "rpc "))
            if not (is_field or is_decl):
                continue
            previous = lines[number - 1].strip() if number else ""
            if (
                "//" in stripped
                or previous.startswith("//")
                or (previous.endswith("{") and is_field)
            ):
                continue
            undocumented.append(f"{proto.name}:{number + 1}: {stripped}")
    if undocumented:
        pytest.fail("undocumented proto declarations:\n" + "\n".join(undocumented))
