"""A damaged custodian state directory gives one line naming the file and what is wrong,
through the command line's ``main()``, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from psi_core.index import write_index
from psi_custodian import cli
from psi_custodian.state import CustodianState

Damage = Callable[[Path], Path]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory with a config, an epoch key and a (tiny) index."""
    root = tmp_path_factory.mktemp("pristine") / "state"
    state = CustodianState(root)
    epoch = state.init("custodian")
    write_index(
        state.index_dir(epoch.epoch_id),
        np.array([1, 2, 3], dtype="<u8"),
        epoch_id=epoch.epoch_id,
        recipes=("tin_v1",),
        record_count=3,
    )
    state.database.touch()
    return root


def _config(root: Path) -> Path:
    return root / "custodian.json"


def _manifest(root: Path) -> Path:
    (index,) = (root / "index").iterdir()
    return index / "manifest.json"


def _write(path_of: Callable[[Path], Path], data: bytes) -> Damage:
    def damage(root: Path) -> Path:
        path = path_of(root)
        path.write_bytes(data)
        return path

    return damage


def _edit_json(path_of: Callable[[Path], Path], edit: Callable[[dict], object]) -> Damage:
    def damage(root: Path) -> Path:
        path = path_of(root)
        data = json.loads(path.read_text())
        changed = edit(data)
        path.write_text(json.dumps(data if changed is None else changed))
        return path

    return damage


def _limits(**changes: object) -> Callable[[dict], None]:
    return lambda data: data["limits"].update(changes)


def _into_directory(path_of: Callable[[Path], Path]) -> Damage:
    def damage(root: Path) -> Path:
        path = path_of(root)
        path.unlink()
        path.mkdir()
        return path

    return damage


def _epoch_dir(root: Path) -> Path:
    (directory,) = (root / "epochs").iterdir()
    return directory


def _epoch_key(root: Path) -> Path:
    return _epoch_dir(root) / "epoch.key"


def _epoch_meta(root: Path) -> Path:
    return _epoch_dir(root) / "epoch.json"


def _registry(root: Path) -> Path:
    return root / "epochs.json"


CONFIG_DAMAGE: dict[str, Damage] = {
    "config-empty": _write(_config, b""),
    "config-truncated": _write(_config, b'{"custodian_id": "cus'),
    "config-not-utf8": _write(_config, b"\xff\xfe\x00garbage"),
    "config-array": _write(_config, b"[1, 2]"),
    "config-no-id": _edit_json(_config, lambda d: d.pop("custodian_id")),
    "config-id-number": _edit_json(_config, lambda d: d.update(custodian_id=7)),
    "config-id-invalid": _edit_json(_config, lambda d: d.update(custodian_id="a b/c")),
    "config-limits-list": _edit_json(_config, lambda d: d.update(limits=[1])),
    "config-limit-unknown": _edit_json(_config, _limits(max_everything=1)),
    "config-limit-string": _edit_json(_config, _limits(max_points_per_chunk="8")),
    "config-limit-zero": _edit_json(_config, _limits(max_concurrent_evaluations=0)),
    "config-limit-negative": _edit_json(_config, _limits(evaluate_base_seconds=-1.0)),
    "config-limit-bool": _edit_json(_config, _limits(max_message_bytes=True)),
    "config-limit-float-count": _edit_json(_config, _limits(max_subjects_per_query=1.5)),
    "config-directory": _into_directory(_config),
    "epoch-key-garbage": _write(_epoch_key, b"not hex at all\n"),
    "epoch-key-short": _write(_epoch_key, b"abcd\n"),
    "epoch-key-zero": _write(_epoch_key, b"00" * 32 + b"\n"),
    "epoch-key-not-utf8": _write(_epoch_key, b"\xff" * 64),
    "epoch-meta-truncated": _write(_epoch_meta, b'{"epoch_id": '),
    "epoch-meta-no-id": _edit_json(_epoch_meta, lambda d: d.pop("epoch_id")),
    "epoch-meta-directory": _into_directory(_epoch_meta),
    "registry-truncated": _write(_registry, b'{"epochs": ['),
    "registry-no-list": _edit_json(_registry, lambda d: d.update(epochs=3)),
    "registry-unknown-state": _edit_json(
        _registry, lambda d: d["epochs"][0].update(state="sideways")
    ),
    "registry-unknown-field": _edit_json(_registry, lambda d: d["epochs"][0].update(x=1)),
    "manifest-truncated": _write(_manifest, b'{"epoch_id":'),
    "manifest-array": _write(_manifest, b"[]"),
    "manifest-no-key-count": _edit_json(_manifest, lambda d: d.pop("key_count")),
    "manifest-key-count-text": _edit_json(_manifest, lambda d: d.update(key_count="many")),
    "manifest-classic-keys-list": _edit_json(_manifest, lambda d: d.update(classic_keys=[1])),
    "manifest-directory": _into_directory(_manifest),
}


def _copy(pristine: Path, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "state"
    shutil.copytree(pristine, root)
    _epoch_key(root).chmod(0o600)
    return root


def test_the_pristine_state_is_read_without_error(pristine, tmp_path, capsys):
    """The table below damages a state that is otherwise good."""
    root = _copy(pristine, tmp_path)
    assert cli.main(["info", "--state", str(root)]) == 0
    assert "custodian custodian" in capsys.readouterr().out


@pytest.mark.parametrize("damage", list(CONFIG_DAMAGE.values()), ids=list(CONFIG_DAMAGE))
def test_damaged_state_gives_the_path_and_what_is_wrong(pristine, tmp_path, capsys, damage):
    root = _copy(pristine, tmp_path)
    path = damage(root)
    assert cli.main(["info", "--state", str(root)]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(("error (FAILED_PRECONDITION)", "error (DATA_LOSS)")), err
    assert str(path) in lines[0], err


def test_a_damaged_database_gives_its_path(pristine, tmp_path, capsys):
    root = _copy(pristine, tmp_path)
    (root / "custodian.sqlite").write_bytes(b"this is not a database, it is a damaged file" * 40)
    assert cli.main(["audit", "verify", "--state", str(root)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(root / "custodian.sqlite") in err[0], err
    assert err[0].startswith("error (FAILED_PRECONDITION)")
