"""Peak memory of reading an input file, at two sizes: streaming means it does not grow.

    python benchmarks/input_rss.py --rows 2000000 4000000 --xlsx-rows 50000 100000 --dir /tmp/x

Writes one file per shape and size into ``--dir`` (UTF-8 CSV, the same in Windows-1252
with semicolons read with ``--encoding``, Parquet, and .xlsx with numeric ZIPs), then reads
each in a fresh process with ``read_rows`` as the CLIs do and prints its peak RSS
(``VmHWM``) and the ratio between the sizes. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from psi_core.io import SUBJECT_COLUMNS, InputOptions, RowWriter, read_rows

GIVEN = ["José", "Mei", "Priya", "Olga", "John", "Aisha", "Minh", "Kwame", "Sofía", "Chloé"]
FAMILY = ["García López", "Wang", "Patel", "Müller", "Smith", "Okafor", "Nguyen", "Ivanova"]


def _columns(start: int, count: int) -> dict[str, list[str]]:
    ids = range(start, start + count)
    return {
        "subject_id": [f"S{i:09d}" for i in ids],
        "given_name": [GIVEN[i % 10] for i in ids],
        "family_name": [FAMILY[i % 8] for i in ids],
        "date_of_birth": [f"19{50 + i % 50}-0{1 + i % 9}-1{i % 10}" for i in ids],
        "street": [f"{i % 9999} Main St Apt {i % 7}" for i in ids],
        "city": ["Springfield"] * count,
        "state": ["IL"] * count,
        "zip": [f"{i % 99999:05d}" for i in ids],
        "tin": [f"{100 + i % 800:03d}-{10 + i % 89:02d}-{1000 + i % 8999:04d}" for i in ids],
    }


def make(path: Path, rows: int) -> None:
    if path.exists():
        return
    if path.suffix == ".xlsx":
        import openpyxl

        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet("Subjects")
        sheet.append(list(SUBJECT_COLUMNS))
        data = _columns(0, rows)
        for i in range(rows):
            sheet.append([int(data[c][i]) if c == "zip" else data[c][i] for c in SUBJECT_COLUMNS])
        book.save(path)
        return
    if path.name.endswith(".cp1252.csv"):
        utf8 = path.with_name(path.name.replace(".cp1252", ""))
        make(utf8, rows)
        text = utf8.read_text(encoding="utf-8").replace(",", ";")
        path.write_bytes(text.encode("cp1252"))
        return
    with RowWriter(path, SUBJECT_COLUMNS) as writer:
        for start in range(0, rows, 100_000):
            writer.write_columns(_columns(start, min(100_000, rows - start)))


def _high_water_mib() -> float:
    """This process's peak resident set (VmHWM); unlike ru_maxrss it does not inherit the
    parent's peak across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: str, encoding: str | None) -> None:
    began = time.perf_counter()
    total = 0
    options = InputOptions(encoding=encoding)
    for batch in read_rows(path, SUBJECT_COLUMNS, options=options, batch_rows=65536):
        total += len(batch)
    peak_mib = _high_water_mib()
    print(f"{total} {peak_mib:.0f} {time.perf_counter() - began:.1f}")


def main() -> None:
    if sys.argv[1:2] == ["--measure"]:
        measure(sys.argv[2], sys.argv[3] or None)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs=2, default=[2_000_000, 4_000_000])
    parser.add_argument("--xlsx-rows", type=int, nargs=2, default=[50_000, 100_000])
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    shapes = [
        ("CSV UTF-8", ".csv", "", args.rows),
        ("CSV cp1252 ';' (transcoded)", ".cp1252.csv", "cp1252", args.rows),
        ("Parquet", ".parquet", "", args.rows),
        (".xlsx", ".xlsx", "", args.xlsx_rows),
    ]
    head = f"{'rows':>10}{'peak RSS MiB':>14}"
    print(f"{'shape':<30}{head}{head}{'ratio':>7}")
    for label, suffix, encoding, sizes in shapes:
        peaks = []
        for rows in sizes:
            path = args.dir / f"s{rows}{suffix}"
            make(path, rows)
            out = subprocess.run(
                [sys.executable, __file__, "--measure", str(path), encoding],
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            assert int(out[0]) == rows, out
            peaks.append(float(out[1]))
        print(
            f"{label:<30}{sizes[0]:>10,}{peaks[0]:>14.0f}{sizes[1]:>10,}{peaks[1]:>14.0f}"
            f"{peaks[1] / peaks[0]:>7.2f}"
        )


if __name__ == "__main__":
    main()
