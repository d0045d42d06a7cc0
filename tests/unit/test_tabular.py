"""Streaming CSV/Parquet reading and writing: round trips, exact line numbers, refusals."""

from __future__ import annotations

import itertools
import random
import weakref
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from psi_core.errors import InputFileError, InvalidInputError, NotFoundError, RowError
from psi_core.io import (
    RECORD_COLUMNS,
    SUBJECT_COLUMNS,
    TRUTH_COLUMNS,
    RowWriter,
    count_rows,
    estimate_rows,
    read_rows,
    tabular,
)

HEADER = ",".join(RECORD_COLUMNS)


def record(i: int, **changes: str) -> dict[str, str]:
    row = {
        "record_id": f"R{i:09d}",
        "given_name": "José",
        "family_name": "García López",
        "date_of_birth": "1980-04-12",
        "street": "123 N MAIN ST APT 4",
        "city": "BOSTON",
        "state": "MA",
        "zip": "02138",
        "tin": f"123-45-{i:04d}",
    }
    row.update(changes)
    return row


def line(i: int) -> str:
    return ",".join(record(i).values())


def write_csv(path: Path, lines: list[str], *, ending: str = "\n") -> Path:
    path.write_bytes(ending.join(lines).encode() + ending.encode())
    return path


def read_all(path: Path, columns: tuple[str, ...] = RECORD_COLUMNS, **kwargs) -> list[dict]:
    return [row for batch in read_rows(path, columns, **kwargs) for row in batch]


TRICKY = [
    record(0),
    record(1, given_name='Anne "Annie", Marie', family_name="O'Brien, Jr."),
    record(2, given_name="Nguyễn Thị", family_name="Łukasz Żółć", street="line one\nline two"),
    record(3, date_of_birth="", tin="", street="  padded  "),
    record(4, given_name="名前", family_name="مصطفى"),
]


# Round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq", ".CSV"])
def test_round_trip_keeps_every_value(tmp_path, suffix):
    """What RowWriter writes, read_rows gives back unchanged: quotes, commas, newlines, Unicode."""
    path = tmp_path / f"people{suffix}"
    with RowWriter(path, RECORD_COLUMNS) as writer:
        writer.write_rows(TRICKY)
    assert writer.rows_written == len(TRICKY)
    assert read_all(path) == TRICKY


def test_csv_is_plain_utf8_with_header_and_minimal_quoting(tmp_path):
    """The CSV a person opens has a bare header and quotes only the cells that need them."""
    path = tmp_path / "people.csv"
    with RowWriter(path, RECORD_COLUMNS) as writer:
        writer.write_rows(TRICKY[:2])
    text = path.read_text(encoding="utf-8").splitlines()
    assert text[0] == HEADER
    assert text[1] == line(0)
    assert '"Anne ""Annie"", Marie"' in text[2]


def test_extra_columns_are_ignored_and_order_is_free(tmp_path):
    """A header with more columns, in another order, still yields exactly the asked columns."""
    columns = ["note", *reversed(RECORD_COLUMNS), "other"]
    row = record(7)
    values = ["x,y", *(row[c] for c in reversed(RECORD_COLUMNS)), "z"]
    path = tmp_path / "wide.csv"
    path.write_text(",".join(columns) + "\n" + ",".join(f'"{v}"' for v in values) + "\n")
    assert read_all(path) == [row]


def test_header_whitespace_and_bom_are_tolerated(tmp_path):
    """A UTF-8 byte-order mark and spaces around header names do not hide a column."""
    path = tmp_path / "bom.csv"
    header = ", ".join(RECORD_COLUMNS)
    path.write_bytes(b"\xef\xbb\xbf" + f"{header}\n{line(1)}\n".encode())
    assert read_all(path) == [record(1)]


@pytest.mark.parametrize("content", [HEADER, HEADER + "\n", HEADER + "\r\n\n\n"])
def test_header_only_csv_yields_no_batch(tmp_path, content):
    """A header with no data rows (with or without trailing newlines) yields nothing."""
    path = tmp_path / "empty.csv"
    path.write_text(content)
    assert list(read_rows(path, RECORD_COLUMNS)) == []
    assert count_rows(path) == 0


def test_empty_parquet_yields_no_batch(tmp_path):
    """A Parquet file with the right schema and no rows yields nothing and counts 0."""
    path = tmp_path / "empty.parquet"
    with RowWriter(path, RECORD_COLUMNS):
        pass
    assert list(read_rows(path, RECORD_COLUMNS)) == []
    assert count_rows(path) == 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_batches_are_full_ordered_and_deterministic(tmp_path, suffix):
    """Every batch but the last has batch_rows rows, in file order, the same on every read."""
    path = tmp_path / f"many{suffix}"
    rows = [record(i) for i in range(10_007)]
    with RowWriter(path, RECORD_COLUMNS, row_group_rows=999) as writer:
        writer.write_rows(rows)
    first = list(read_rows(path, RECORD_COLUMNS, batch_rows=97))
    second = list(read_rows(path, RECORD_COLUMNS, batch_rows=97))
    assert first == second
    assert [len(b) for b in first] == [97] * 103 + [16]
    assert list(itertools.chain.from_iterable(first)) == rows
    assert count_rows(path) == 10_007


@pytest.mark.parametrize("rows", [0, 5, 60_000])
def test_estimate_rows_reads_parquet_metadata_and_samples_csv(tmp_path, rows):
    """Parquet counts are exact; a CSV's is the size over the first MiB's line length."""
    data = [record(i) for i in range(rows)]
    for suffix in (".parquet", ".csv"):
        path = tmp_path / f"r{suffix}"
        with RowWriter(path, RECORD_COLUMNS) as writer:
            writer.write_rows(data)
        estimate, exact = estimate_rows(path)
        assert exact == (suffix == ".parquet")
        assert estimate == pytest.approx(rows, rel=0.02, abs=1), suffix


def test_skipped_rows_do_not_shift_batch_boundaries_between_reads(tmp_path):
    """With bad rows skipped, batch k still holds readable rows k*B .. (k+1)*B on every read."""
    lines = [HEADER] + [line(i) if i % 10 else "R,short" for i in range(1, 501)]
    path = write_csv(tmp_path / "gappy.csv", lines)
    runs = [
        [
            [r["record_id"] for r in b]
            for b in read_rows(path, RECORD_COLUMNS, batch_rows=40, on_error="skip", errors=[])
        ]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert all(len(b) == 40 for b in runs[0][:-1])
    assert sum(len(b) for b in runs[0]) == 450


def test_parquet_non_string_columns_are_read_as_text(tmp_path):
    """Parquet dates, integers and nulls come back as text, nulls as ""."""
    table = pa.table(
        {
            **{c: pa.array([record(1)[c], record(2)[c]]) for c in RECORD_COLUMNS},
            "date_of_birth": pa.array([None, 0], pa.date32()),
            "zip": pa.array([2138, None], pa.int64()),
        }
    )
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    rows = read_all(path)
    assert [r["date_of_birth"] for r in rows] == ["", "1970-01-01"]
    assert [r["zip"] for r in rows] == ["2138", ""]


def test_truth_file_allows_empty_record_id(tmp_path):
    """Only the first column is an id: a truth row with an empty record_id is readable."""
    path = write_csv(tmp_path / "truth.csv", ["subject_id,record_id", "S0000001,", "S0000002,R1"])
    assert read_all(path, TRUTH_COLUMNS) == [
        {"subject_id": "S0000001", "record_id": ""},
        {"subject_id": "S0000002", "record_id": "R1"},
    ]


def test_parquet_bytes_do_not_depend_on_write_batching(tmp_path):
    """Row groups are cut by row count, so one big write and many small ones give equal files."""
    rows = [record(i) for i in range(2_500)]
    one, many = tmp_path / "one.parquet", tmp_path / "many.parquet"
    with RowWriter(one, RECORD_COLUMNS, row_group_rows=1000) as writer:
        writer.write_rows(rows)
    with RowWriter(many, RECORD_COLUMNS, row_group_rows=1000) as writer:
        for start in range(0, len(rows), 333):
            writer.write_rows(rows[start : start + 333])
    assert one.read_bytes() == many.read_bytes()
    assert pq.ParquetFile(one).metadata.num_row_groups == 3


def test_writer_replaces_the_final_file_only_on_close(tmp_path):
    """Until close() the destination keeps its old content; after it, the new rows."""
    path = tmp_path / "out.csv"
    path.write_text("old")
    writer = RowWriter(path, TRUTH_COLUMNS)
    writer.write_rows([{"subject_id": "S1", "record_id": ""}])
    assert path.read_text() == "old"
    writer.close()
    assert path.read_text() == "subject_id,record_id\nS1,\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_writer_write_columns_accepts_columnar_input(tmp_path):
    """write_columns writes rows given column-wise; None becomes an empty cell."""
    path = tmp_path / "cols.csv"
    with RowWriter(path, TRUTH_COLUMNS) as writer:
        writer.write_columns({"subject_id": ["S1", "S2"], "record_id": [None, "R9"]})
    assert path.read_text() == "subject_id,record_id\nS1,\nS2,R9\n"


# Exact line numbers ------------------------------------------------------------------


def test_wrong_field_count_is_refused_with_its_line(tmp_path):
    """A short row in the middle raises RowError naming its physical line."""
    lines = [HEADER, line(1), line(2), "R000000003,Ann,Lee", line(4)]
    path = write_csv(tmp_path / "bad.csv", lines)
    with pytest.raises(RowError) as caught:
        read_all(path)
    assert caught.value.line == 4
    assert caught.value.reason == "expected 9 fields, found 3"
    assert str(caught.value) == f"{path}: line 4: expected 9 fields, found 3"


def test_wrong_field_count_is_skipped_and_reported(tmp_path):
    """In skip mode the bad rows are left out, listed with their lines, the rest is read."""
    lines = [HEADER, line(1), "R2,too,few", line(3), line(4) + ",extra", line(5)]
    path = write_csv(tmp_path / "bad.csv", lines)
    errors: list[RowError] = []
    rows = read_all(path, on_error="skip", errors=errors)
    assert [r["record_id"] for r in rows] == ["R000000001", "R000000003", "R000000005"]
    assert [(e.line, e.reason) for e in errors] == [
        (3, "expected 9 fields, found 3"),
        (5, "expected 9 fields, found 10"),
    ]


def test_lines_count_blank_lines_quoted_newlines_and_crlf(tmp_path):
    """Lines are physical: blank lines, newlines inside quotes and CRLF endings all count."""
    multi = line(2).replace("123 N MAIN ST APT 4", '"123 N MAIN ST\r\nAPT 4\r\nREAR"')
    lines = [HEADER, line(1), "", multi, "", "R3,short", line(4), "  ", ",,,,,,,,", "R5,x"]
    path = write_csv(tmp_path / "crlf.csv", lines, ending="\r\n")
    errors: list[RowError] = []
    rows = read_all(path, on_error="skip", errors=errors)
    assert [r["record_id"] for r in rows] == ["R000000001", "R000000002", "R000000004"]
    assert rows[1]["street"] == "123 N MAIN ST\r\nAPT 4\r\nREAR"
    assert [e.line for e in errors] == [8, 12]


def test_bad_row_far_into_a_large_file_has_its_exact_line(tmp_path):
    """Line numbers stay exact across pyarrow's blocks (a bad row past several MiB)."""
    lines = [HEADER] + [line(i) for i in range(1, 120_001)]
    lines[50_000] = line(50_000).replace("123 N MAIN ST APT 4", '"123 N MAIN ST\nAPT 4"')
    lines[70_000] = lines[70_001] = lines[100_000] = "R,short"
    path = write_csv(tmp_path / "large.csv", lines)
    errors: list[RowError] = []
    total = sum(len(b) for b in read_rows(path, RECORD_COLUMNS, on_error="skip", errors=errors))
    assert total == 119_997
    assert [e.line for e in errors] == [70_002, 70_003, 100_002]


def test_invalid_utf8_is_located_not_fatal(tmp_path):
    """A row with invalid UTF-8 is a RowError at its line; in skip mode the rest is read."""
    body = [HEADER.encode(), line(1).encode(), line(2).encode().replace(b"Jos\xc3\xa9", b"Jos\xe9")]
    body += [line(3).encode()]
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"\n".join(body) + b"\n")
    with pytest.raises(RowError) as caught:
        read_all(path)
    assert (caught.value.line, caught.value.column) == (3, "given_name")
    assert caught.value.reason.startswith("not valid UTF-8")
    errors: list[RowError] = []
    rows = read_all(path, on_error="skip", errors=errors)
    assert [r["record_id"] for r in rows] == ["R000000001", "R000000003"]
    assert [e.line for e in errors] == [3]


def test_invalid_utf8_in_an_ignored_column_is_harmless(tmp_path):
    """Bytes in a column nobody asked for are never decoded."""
    path = tmp_path / "extra.csv"
    path.write_bytes(f"{HEADER},note\n{line(1)},".encode() + b"\xff\xfe\n")
    assert read_all(path) == [record(1)]


@pytest.mark.parametrize("bad_id", ["", "   "])
def test_empty_id_is_a_row_error(tmp_path, bad_id):
    """A row whose id column is empty or blank is refused with its line."""
    path = write_csv(tmp_path / "noid.csv", [HEADER, line(1), bad_id + line(2)[10:]])
    with pytest.raises(RowError) as caught:
        read_all(path)
    assert (caught.value.line, caught.value.reason) == (3, "empty record_id")


def test_parquet_row_errors_count_the_header_as_line_one(tmp_path):
    """In Parquet, row i (0-based) is reported as line i + 2."""
    rows = [record(i) for i in range(5)]
    rows[3]["record_id"] = ""
    path = tmp_path / "gap.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    errors: list[RowError] = []
    assert len(read_all(path, on_error="skip", errors=errors)) == 4
    assert [(e.line, e.reason) for e in errors] == [(5, "empty record_id")]


def test_parquet_invalid_utf8_in_binary_column_is_located(tmp_path):
    """A Parquet binary column with invalid UTF-8 gives a RowError at that row."""
    columns = {c: pa.array([record(1)[c], record(2)[c]]) for c in RECORD_COLUMNS}
    columns["family_name"] = pa.array([b"Garc\xc3\xada", b"Garc\xeda"], pa.binary())
    path = tmp_path / "bytes.parquet"
    pq.write_table(pa.table(columns), path)
    with pytest.raises(RowError) as caught:
        read_all(path)
    assert (caught.value.line, caught.value.column) == (3, "family_name")
    assert caught.value.reason == "not valid UTF-8"


def test_row_errors_never_echo_cell_content(tmp_path):
    """Messages name file, line and column, never the person's data."""
    path = write_csv(tmp_path / "pii.csv", [HEADER, "R1,Zbigniew,Secretname"])
    with pytest.raises(RowError) as caught:
        read_all(path)
    assert "Zbigniew" not in str(caught.value)
    assert "Secretname" not in str(caught.value)


# Refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_missing_columns_are_named(tmp_path, suffix):
    """A file lacking required columns is refused before any row, naming every missing one."""
    path = tmp_path / f"narrow{suffix}"
    with RowWriter(path, ("record_id", "given_name", "family_name")) as writer:
        writer.write_rows([{"record_id": "R1", "given_name": "A", "family_name": "B"}])
    with pytest.raises(InvalidInputError, match="missing required columns: date_of_birth, street"):
        read_rows(path, RECORD_COLUMNS)


def test_subject_file_is_not_a_record_file(tmp_path):
    """Reading subjects as records fails on the id column, not later on a row."""
    path = tmp_path / "subjects.csv"
    path.write_text(",".join(SUBJECT_COLUMNS) + "\n")
    with pytest.raises(InvalidInputError, match=r"missing required columns: record_id;"):
        read_rows(path, RECORD_COLUMNS)


def test_duplicate_required_column_is_refused(tmp_path):
    """Two columns with the same required name are ambiguous and refused."""
    path = write_csv(tmp_path / "dup.csv", [HEADER + ",tin", line(1) + ",999-99-9999"])
    with pytest.raises(InvalidInputError, match="'tin', 'tin' all match tin"):
        read_rows(path, RECORD_COLUMNS)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_empty_csv_is_refused(tmp_path, content):
    """A CSV file without a header row is refused with a message about line 1."""
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match="line 1: no header row"):
        read_rows(path, RECORD_COLUMNS)


def test_header_with_invalid_utf8_is_refused(tmp_path):
    """A header that is not UTF-8 is refused as a file error at line 1."""
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.replace("zip", "z\xedp").encode("latin-1") + b"\n")
    with pytest.raises(InvalidInputError, match="line 1: header is not valid UTF-8"):
        read_rows(path, RECORD_COLUMNS)


def test_corrupt_parquet_is_refused_cleanly(tmp_path):
    """Bytes that are not Parquet give InvalidInputError, not a pyarrow exception."""
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(InvalidInputError, match="not a readable Parquet file"):
        read_rows(path, RECORD_COLUMNS)
    with pytest.raises(InvalidInputError, match="not a readable Parquet file"):
        count_rows(path)


def test_truncated_parquet_is_refused_cleanly(tmp_path):
    """A Parquet file cut short (footer lost) gives InvalidInputError."""
    path = tmp_path / "cut.parquet"
    with RowWriter(path, RECORD_COLUMNS) as writer:
        writer.write_rows([record(i) for i in range(1000)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="truncated or corrupt"):
        read_rows(path, RECORD_COLUMNS)


def test_parquet_with_damaged_pages_is_refused_while_streaming(tmp_path):
    """Damage inside the data pages surfaces as InvalidInputError during iteration."""
    path = tmp_path / "damaged.parquet"
    with RowWriter(path, RECORD_COLUMNS) as writer:
        writer.write_rows([record(i) for i in range(5000)])
    data = bytearray(path.read_bytes())
    data[200:4000] = random.Random(0).randbytes(3800)
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match="Parquet"):
        read_all(path)


@pytest.mark.parametrize("reader", [read_rows, count_rows])
def test_nonexistent_path_is_an_input_file_error(tmp_path, reader):
    """A path that does not exist raises InputFileError as soon as it is named."""
    args = (RECORD_COLUMNS,) if reader is read_rows else ()
    with pytest.raises(InputFileError, match="no such file"):
        reader(tmp_path / "missing.csv", *args)


def test_directory_is_not_a_file(tmp_path):
    """A directory given as input is refused as invalid input."""
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(InvalidInputError, match="not a regular file"):
        read_rows(folder, RECORD_COLUMNS)


@pytest.mark.parametrize("name", ["people.txt", "people.json", "people", "people.csv.gz"])
def test_unknown_suffix_is_refused_for_reading_and_writing(tmp_path, name):
    """Only .csv, .parquet and .pq are accepted, by reader and writer alike."""
    path = tmp_path / name
    path.write_text(HEADER + "\n")
    with pytest.raises(InvalidInputError, match="unknown file type"):
        read_rows(path, RECORD_COLUMNS)
    with pytest.raises(InvalidInputError, match="unknown file type"):
        RowWriter(path, RECORD_COLUMNS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_error": "skip"}, "needs an errors list"),
        ({"on_error": "ignore", "errors": []}, "must be"),
        ({"batch_rows": 0}, "at least 1"),
    ],
)
def test_bad_reader_arguments_are_programming_errors(tmp_path, kwargs, message):
    """Misuse of read_rows is a ValueError, raised before the file is read."""
    path = write_csv(tmp_path / "ok.csv", [HEADER, line(1)])
    with pytest.raises(ValueError, match=message):
        read_rows(path, RECORD_COLUMNS, **kwargs)


def test_refuse_mode_raises_when_iteration_reaches_the_row(tmp_path):
    """Rows before a bad one are yielded in earlier batches; then the error is raised."""
    lines = [HEADER] + [line(i) for i in range(1, 11)] + ["R11,short"]
    path = write_csv(tmp_path / "late.csv", lines)
    batches = read_rows(path, RECORD_COLUMNS, batch_rows=5)
    assert len(next(batches)) == 5
    assert len(next(batches)) == 5
    with pytest.raises(RowError, match="line 12"):
        next(batches)


def test_writer_discards_everything_on_error(tmp_path):
    """An exception inside the with block leaves neither the file nor a temporary behind."""
    path = tmp_path / "out.parquet"

    def crash_while_writing() -> None:
        with RowWriter(path, RECORD_COLUMNS) as writer:
            writer.write_rows([record(1)])
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        crash_while_writing()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({**record(1), "zip": 2138}, TypeError),
        ({k: v for k, v in record(1).items() if k != "tin"}, ValueError),
    ],
)
def test_writer_refuses_non_text_and_missing_values(tmp_path, row, error):
    """Values must be str and every column present; nothing is left on disk after a refusal."""
    path = tmp_path / "out.csv"
    with pytest.raises(error), RowWriter(path, RECORD_COLUMNS) as writer:
        writer.write_rows([row])
    assert list(tmp_path.iterdir()) == []


def test_writer_needs_an_existing_directory(tmp_path):
    """Writing into a directory that does not exist raises NotFoundError."""
    with pytest.raises(NotFoundError):
        RowWriter(tmp_path / "nowhere" / "out.csv", RECORD_COLUMNS)


def test_closed_writer_refuses_more_rows(tmp_path):
    """After close, write_rows is a ValueError rather than a silent no-op."""
    writer = RowWriter(tmp_path / "out.csv", TRUTH_COLUMNS)
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write_rows([{"subject_id": "S1", "record_id": ""}])


# pyarrow's threads -------------------------------------------------------------------


@pytest.fixture
def live_row_handlers(monkeypatch) -> weakref.WeakSet:
    """The row handlers handed to pyarrow that are still alive."""
    live: weakref.WeakSet = weakref.WeakSet()

    class TrackedHandler(tabular._InvalidRowHandler):
        __slots__ = ()

        def __init__(self, on_invalid) -> None:
            super().__init__(on_invalid)
            live.add(self)

    monkeypatch.setattr(tabular, "_InvalidRowHandler", TrackedHandler)
    return live


def test_a_finished_read_leaves_no_handler_with_pyarrow(tmp_path, live_row_handlers):
    """A process may exit right after a read: pyarrow must hold nothing of Python's then.

    pyarrow finishes read-ahead on its own threads and, now and then, releases the reader
    (and our handler, under the GIL) there after the last batch was returned. During
    interpreter shutdown that aborts the process after its work succeeded. Many short
    reads make the race likely; each must end with the handler released.
    """
    path = write_csv(tmp_path / "small.csv", [HEADER] + [line(i) for i in range(50)])
    for _ in range(300):
        assert sum(len(batch) for batch in read_rows(path, RECORD_COLUMNS)) == 50
        assert len(live_row_handlers) == 0
        assert count_rows(path) == 50
        assert len(live_row_handlers) == 0


def test_abandoned_and_failed_reads_leave_no_handler_with_pyarrow(tmp_path, live_row_handlers):
    rows = 3 * tabular._CSV_BLOCK_BYTES // len(line(0))
    path = write_csv(tmp_path / "big.csv", [HEADER] + [line(i) for i in range(rows)])
    batches = read_rows(path, RECORD_COLUMNS, batch_rows=10)
    next(batches)
    assert len(live_row_handlers) == 1
    batches.close()
    assert len(live_row_handlers) == 0

    with path.open("a") as bad:
        bad.write("R-short,row\n")
    with pytest.raises(RowError):
        read_all(path)
    assert len(live_row_handlers) == 0
