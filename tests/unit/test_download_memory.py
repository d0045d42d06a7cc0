"""An index download holds at most one chunk in memory, however large the index.

Each case runs in a fresh interpreter so that ``tracemalloc`` sees only the download:
a 64 MiB index arrives in 1 MiB chunks (numpy registers its buffers with tracemalloc, so
reading the file into an array would show up as a 64 MiB peak).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

MIB = 1 << 20

_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys, tracemalloc
    from pathlib import Path
    import numpy as np
    from psi_core.errors import IntegrityError
    from psi_core.index import IndexDownload, IndexManifest

    root, total_mib, resume_after, corrupt = Path(sys.argv[1]), *map(int, sys.argv[2:5])
    per_chunk = (1 << 20) // 8

    def chunk(i, tamper=bool(corrupt)):
        values = np.arange(i * per_chunk, (i + 1) * per_chunk, dtype="<u8") * 3 + 1
        if tamper and i == total_mib - 1:
            values[-1] += 1
        return values.tobytes()

    digest = hashlib.sha256()
    for i in range(total_mib):
        digest.update(chunk(i, tamper=False))
    manifest = IndexManifest(
        epoch_id="e1", recipes=("tin_v1",), record_count=total_mib * per_chunk,
        key_count=total_mib * per_chunk, size_bytes=total_mib * (1 << 20),
        sha256=digest.hexdigest(),
    )
    first = 0
    if resume_after:
        download = IndexDownload(root, manifest)
        for i in range(resume_after):
            download.append(download.offset, chunk(i))
        first = resume_after
    tracemalloc.start()
    download = IndexDownload(root, manifest)
    for i in range(first, total_mib):
        download.append(download.offset, chunk(i))
    outcome = "published"
    try:
        index = download.finish()
        assert len(index) == manifest.key_count
    except IntegrityError as exc:
        outcome = str(exc)
    print(json.dumps({"peak": tracemalloc.get_traced_memory()[1], "outcome": outcome}))
    """
)


def _download(tmp_path, total_mib: int, *, resume_after: int = 0, corrupt: bool = False) -> dict:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _SCRIPT,
            str(tmp_path),
            str(total_mib),
            str(resume_after),
            str(int(corrupt)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


@pytest.mark.parametrize("resume_after", [0, 40], ids=["fresh", "resumed"])
def test_64_mib_index_downloads_with_about_one_chunk_of_memory(tmp_path, resume_after):
    """Hashing and the order check are incremental: the peak stays near one 1 MiB chunk.

    Before the fix ``finish`` read the whole file into one array (a 64 MiB peak); a
    resumed download re-reads its partial file in blocks, never at once.
    """
    result = _download(tmp_path, 64, resume_after=resume_after)
    assert result["outcome"] == "published"
    assert result["peak"] < 4 * MIB, f"peak {result['peak'] / MIB:.1f} MiB"


def test_incremental_digest_still_refuses_a_wrong_index(tmp_path):
    """Control: the incremental hash catches a wrong digest, with the same small peak."""
    result = _download(tmp_path, 8, corrupt=True)
    assert "SHA-256" in result["outcome"]
    assert result["peak"] < 4 * MIB
