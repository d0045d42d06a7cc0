"""Streaming reading and writing of the project's CSV and Parquet files.

Every file people hand to the system is a CSV file (UTF-8, header row) or a Parquet file
with the same column names; the format is chosen by the suffix (``.csv``, ``.parquet``,
``.pq``, in any case). Empty cells mean unknown and are read as ``""``.

Reading streams through pyarrow, so memory is bounded by ``batch_rows`` and pyarrow's
block size, never by the file. A row that cannot be read becomes a
:class:`~psi_core.errors.RowError` carrying its line:

* CSV: the 1-based physical line on which the row starts (the header is line 1; blank
  lines and newlines inside quoted fields are counted). pyarrow numbers *records*; the
  physical line is that number plus the newlines embedded in all earlier records, which
  are counted in the parsed values (and in the raw text of malformed rows). The count is
  exact for ``\\n`` and ``\\r\\n`` line endings; a lone ``\\r`` inside a quoted field is
  not counted as a line break.
* Parquet: the 0-based row index plus 2, as if the file had a header line.

Error messages name the file, line, column and reason, never a cell's content.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import os
import secrets
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from psi_core.errors import InvalidInputError, NotFoundError, RowError

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "RECORD_COLUMNS",
    "SUBJECT_COLUMNS",
    "TRUTH_COLUMNS",
    "OnError",
    "RowWriter",
    "count_rows",
    "file_format",
    "read_rows",
]

_PERSON_COLUMNS: Final = (
    "given_name",
    "family_name",
    "date_of_birth",
    "street",
    "city",
    "state",
    "zip",
    "tin",
)
RECORD_COLUMNS: Final[tuple[str, ...]] = ("record_id", *_PERSON_COLUMNS)
"""Columns of the custodian's taxpayer records."""
SUBJECT_COLUMNS: Final[tuple[str, ...]] = ("subject_id", *_PERSON_COLUMNS)
"""Columns of an agency's subject list."""
TRUTH_COLUMNS: Final[tuple[str, ...]] = ("subject_id", "record_id")
"""Columns of a synthetic truth file (``record_id`` empty for a non-member)."""

DEFAULT_BATCH_ROWS: Final = 65536

OnError = Literal["refuse", "skip"]
FileFormat = Literal["csv", "parquet"]

_SUFFIXES: Final[dict[str, FileFormat]] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_CSV_BLOCK_BYTES: Final = 4 << 20
_CSV_RELEASE_SECONDS: Final = 10.0
_MAX_HEADER_BYTES: Final = 1 << 20
_PARQUET_READ_ROWS: Final = 65536
_DEFAULT_ROW_GROUP_ROWS: Final = 131072

Row = dict[str, str]


def file_format(path: str | os.PathLike[str]) -> FileFormat:
    """Return ``"csv"`` or ``"parquet"`` for ``path`` by its suffix.

    Raises :class:`InvalidInputError` for any other suffix.
    """
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        raise InvalidInputError(
            f"{os.fspath(path)}: unknown file type {suffix or '(no suffix)'!r}; "
            "use .csv, .parquet or .pq"
        ) from None


def read_rows(
    path: str | os.PathLike[str],
    columns: Sequence[str],
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    on_error: OnError = "refuse",
    errors: list[RowError] | None = None,
) -> Iterator[list[Row]]:
    """Stream the rows of a CSV or Parquet file as batches of ``{column: str}`` dicts.

    ``columns`` are the columns every row must have; the file may hold more, which are
    ignored. ``columns[0]`` is the row's id and must not be empty (after trimming
    whitespace). Each yielded dict has exactly ``columns`` as keys and ``str`` values,
    ``""`` where the cell is empty or null.

    Batching is deterministic: batch ``k`` holds the readable rows ``k * batch_rows`` up
    to ``(k + 1) * batch_rows`` in file order, so every batch but the last has exactly
    ``batch_rows`` rows and a batch index can serve as a resumable shard id. A header-only
    file yields no batch. CSV rows whose every field is empty (blank lines) are passed
    over without error.

    A row that cannot be read (wrong number of fields, invalid UTF-8 in a required column,
    empty id) is a :class:`RowError`. With ``on_error="refuse"`` it is raised when the
    iteration reaches it (earlier batches have then already been yielded); with
    ``"skip"`` it is appended to ``errors``, which must then be a list, and the row is
    left out.

    The file's existence, suffix and header are checked before this returns:
    :class:`NotFoundError` for a missing file; :class:`InvalidInputError` for an unknown
    suffix, an unreadable or corrupt file, or missing required columns (all named).
    Failures found while streaming are raised as :class:`InvalidInputError` too, never as
    a pyarrow exception.
    """
    columns = _check_columns(columns)
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    if on_error == "refuse":
        report = _raise
    elif on_error == "skip":
        if errors is None:
            raise ValueError('on_error="skip" needs an errors list to receive the skipped rows')
        report = errors.append
    else:
        raise ValueError(f'on_error must be "refuse" or "skip", got {on_error!r}')
    name = os.fspath(path)
    fmt = file_format(name)
    _check_readable(name)
    if fmt == "csv":
        header, has_data = _read_csv_header(name)
        _check_header(name, [h.strip() for h in header], columns)
        chunks = _csv_chunks(name, header, columns, report) if has_data else iter(())
    else:
        parquet = _open_parquet(name)
        try:
            _check_header(name, parquet.schema_arrow.names, columns)
        finally:
            parquet.close()
        chunks = _parquet_chunks(name, columns, report)
    return _rebatch(chunks, batch_rows)


_ESTIMATE_SAMPLE_BYTES = 1 << 20


def estimate_rows(path: str | os.PathLike[str]) -> tuple[int, bool]:
    """A quick row count for a progress bar: (rows, exact), never a pass over the file.

    Parquet: the metadata's count (exact). CSV: the file size over the mean line length
    of its first MiB, less the header (an estimate: blank lines and quoted line breaks
    count as rows).
    """
    name = os.fspath(path)
    fmt = file_format(name)
    _check_readable(name)
    if fmt == "parquet":
        parquet = _open_parquet(name)
        try:
            return parquet.metadata.num_rows, True
        finally:
            parquet.close()
    size = os.path.getsize(name)
    with open(name, "rb") as handle:
        sample = handle.read(_ESTIMATE_SAMPLE_BYTES)
    lines = sample.count(b"\n") + (0 if sample.endswith(b"\n") or not sample else 1)
    if lines <= 1:
        return 0, False
    return max(round(size / (len(sample) / lines)) - 1, 0), False


def count_rows(path: str | os.PathLike[str]) -> int:
    """Return the number of data rows in a file, without building any row.

    Parquet: read from the metadata. CSV: one streaming pass that parses only the first
    column; blank lines and the header are not counted, rows with the wrong number of
    fields are. The result is therefore an upper bound on the rows :func:`read_rows`
    yields, and equal to it for a clean file. Raises as :func:`read_rows` does.
    """
    name = os.fspath(path)
    fmt = file_format(name)
    _check_readable(name)
    if fmt == "parquet":
        parquet = _open_parquet(name)
        try:
            return parquet.metadata.num_rows
        finally:
            parquet.close()
    header, has_data = _read_csv_header(name)
    if not header or not has_data:
        return 0
    invalid = 0

    def count_invalid(row: pacsv.InvalidRow) -> str:
        nonlocal invalid
        if row.text.strip():
            invalid += 1
        return "skip"

    total = 0
    with _open_csv(
        name,
        on_invalid=count_invalid,
        parse_options={"newlines_in_values": True},
        convert_options=pacsv.ConvertOptions(
            column_types={header[0]: pa.binary()}, include_columns=[header[0]]
        ),
    ) as reader:
        try:
            while True:
                total += reader.read_next_batch().num_rows
        except StopIteration:
            pass
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInputError(f"{name}: the file cannot be parsed as CSV") from exc
    return total + invalid


class RowWriter:
    """Stream rows to a CSV or Parquet file (by suffix) that appears only when complete.

    Rows are written to a hidden temporary file in the destination's directory, which
    :meth:`close` renames over ``path``; on an exception inside the ``with`` block, or on
    :meth:`abort`, the temporary file is removed and ``path`` is left as it was. A crash
    therefore never leaves a partial file under the final name.

    CSV is UTF-8 with a header row and ``\\n`` line ends, quoting only where needed.
    Parquet holds one non-null string column per name, zstd-compressed, in row groups of
    exactly ``row_group_rows`` rows (the last may be shorter), so the bytes written do not
    depend on how the rows were split across calls.

    Values must be ``str``; ``None`` is written as ``""``. Anything else raises
    :class:`TypeError`, and a row lacking one of ``columns`` raises :class:`ValueError`;
    keys beyond ``columns`` are ignored. A missing destination directory raises
    :class:`NotFoundError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str],
        *,
        row_group_rows: int = _DEFAULT_ROW_GROUP_ROWS,
    ) -> None:
        self._columns = _check_columns(columns)
        if row_group_rows < 1:
            raise ValueError(f"row_group_rows must be at least 1, got {row_group_rows}")
        self._path = Path(path)
        self._format = file_format(self._path)
        directory = self._path.parent
        if not directory.is_dir():
            raise NotFoundError(f"{directory}: directory does not exist")
        self._tmp = directory / f".{self._path.name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self._rows_written = 0
        self._closed = False
        self._schema = pa.schema([pa.field(c, pa.string(), nullable=False) for c in self._columns])
        self._row_group_rows = row_group_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._text: io.TextIOWrapper | None = None
        self._write_csv: Callable[[Iterable[Iterable[str | None]]], None] | None = None
        self._parquet: pq.ParquetWriter | None = None
        try:
            if self._format == "csv":
                self._text = open(fd, "w", encoding="utf-8", newline="")  # noqa: SIM115
                writer = csv.writer(self._text, lineterminator="\n")
                writer.writerow(self._columns)
                self._write_csv = writer.writerows
            else:
                os.close(fd)
                self._parquet = pq.ParquetWriter(self._tmp, self._schema, compression="zstd")
        except BaseException:
            self.abort()
            raise

    @property
    def path(self) -> Path:
        """The final path the file appears under after :meth:`close`."""
        return self._path

    @property
    def rows_written(self) -> int:
        """Rows accepted so far."""
        return self._rows_written

    def write_rows(self, rows: Iterable[Mapping[str, str | None]]) -> None:
        """Write rows given as mappings from column name to value."""
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        data: dict[str, list[str | None]] = {}
        for column in self._columns:
            try:
                data[column] = [row[column] for row in rows]
            except KeyError:
                raise ValueError(f"a row lacks the column {column!r}") from None
        self.write_columns(data)

    def write_columns(self, data: Mapping[str, Sequence[str | None]]) -> None:
        """Write rows given column-wise: ``data[column][i]`` is row ``i``'s value.

        Every column must be present and all must have the same length.
        """
        self._check_open()
        missing = [c for c in self._columns if c not in data]
        if missing:
            raise ValueError(f"missing columns: {', '.join(missing)}")
        lengths = {len(data[c]) for c in self._columns}
        if len(lengths) != 1:
            raise ValueError("columns have different lengths")
        (count,) = lengths
        if count == 0:
            return
        arrays: list[pa.Array] = []
        values: list[Sequence[str | None]] = []
        for column in self._columns:
            try:
                array = pa.array(data[column], type=pa.string())
            except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
                raise TypeError(f"column {column!r} holds a value that is not a str") from exc
            values.append(data[column])
            arrays.append(array.fill_null("") if array.null_count else array)
        if self._write_csv is not None:
            self._write_csv(zip(*values, strict=True))
        else:
            self._pending.append(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
            self._pending_rows += count
            self._flush_row_groups(final=False)
        self._rows_written += count

    def close(self) -> None:
        """Finish the file and move it to its final path. Idempotent."""
        if self._closed:
            return
        try:
            if self._text is not None:
                self._text.flush()
                os.fsync(self._text.fileno())
                self._text.close()
            if self._parquet is not None:
                self._flush_row_groups(final=True)
                self._parquet.close()
            os.replace(self._tmp, self._path)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Discard everything written; ``path`` is left untouched. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for closer in (self._text, self._parquet):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self._path}: writer is closed")

    def _flush_row_groups(self, *, final: bool) -> None:
        assert self._parquet is not None
        size = self._row_group_rows
        if self._pending_rows < size and not (final and self._pending_rows):
            return
        table = pa.Table.from_batches(self._pending, schema=self._schema)
        start = 0
        while table.num_rows - start >= size:
            self._parquet.write_table(table.slice(start, size), row_group_size=size)
            start += size
        rest = table.num_rows - start
        if final and rest:
            self._parquet.write_table(table.slice(start), row_group_size=size)
            rest = 0
        self._pending = table.slice(start).combine_chunks().to_batches() if rest else []
        self._pending_rows = rest


def _raise(error: RowError) -> None:
    raise error


def _check_columns(columns: Sequence[str]) -> tuple[str, ...]:
    columns = tuple(columns)
    if not columns:
        raise ValueError("at least one column is required")
    if len(set(columns)) != len(columns):
        raise ValueError(f"duplicate column names in {columns}")
    return columns


def _check_readable(name: str) -> None:
    if not os.path.exists(name):
        raise NotFoundError(f"{name}: no such file")
    if not os.path.isfile(name):
        raise InvalidInputError(f"{name}: not a regular file")


def _check_header(name: str, header: Sequence[str], columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise InvalidInputError(f"{name}: missing required columns: {', '.join(missing)}")
    doubled = sorted({c for c in columns if header.count(c) > 1})
    if doubled:
        raise InvalidInputError(f"{name}: columns appear more than once: {', '.join(doubled)}")


def _rebatch(chunks: Iterator[list[Row]], batch_rows: int) -> Iterator[list[Row]]:
    pending: list[Row] = []
    for chunk in chunks:
        pending.extend(chunk)
        while len(pending) >= batch_rows:
            yield pending[:batch_rows]
            del pending[:batch_rows]
    if pending:
        yield pending


def _rows_from(names: Sequence[str], arrays: Sequence[pa.Array]) -> list[Row]:
    lists = [a.to_pylist() for a in arrays]
    return list(map(dict, map(zip, itertools.repeat(tuple(names)), zip(*lists, strict=True))))


def _utf8_or_flag(array: pa.Array, column: str = "") -> tuple[pa.Array, np.ndarray | None]:
    """Cast a binary array to string; invalid UTF-8 cells become ``""`` and are flagged."""
    try:
        return array.cast(pa.string()), None
    except pa.ArrowInvalid:
        pass
    bad = np.zeros(len(array), dtype=bool)
    for i, value in enumerate(array.to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                bad[i] = True
    cleaned = pc.if_else(pa.array(bad), pa.scalar(b"", pa.binary()), array)
    return cleaned.cast(pa.string()), bad


def _mask(array: pa.Array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def _checked_strings(
    columns: Sequence[str],
    arrays: Sequence[pa.Array],
    to_strings: Callable[[pa.Array, str], tuple[pa.Array, np.ndarray | None]],
    blank: np.ndarray | None = None,
) -> tuple[list[pa.Array], list[tuple[np.ndarray, str]]]:
    """Convert required columns to strings and list each kind of unreadable row.

    Returns the string arrays (unreadable cells as ``""``) and, for each problem present,
    a row mask with its reason. ``blank`` rows are exempt from the empty-id rule.
    """
    strings: list[pa.Array] = []
    problems: list[tuple[np.ndarray, str]] = []
    for column, array in zip(columns, arrays, strict=True):
        converted, bad = to_strings(array, column)
        strings.append(converted)
        if bad is not None:
            problems.append((bad, f"invalid UTF-8 in column {column!r}"))
    empty_id = _mask(pc.equal(pc.utf8_trim_whitespace(strings[0]), ""))
    if blank is not None:
        empty_id &= ~blank
    if empty_id.any():
        problems.append((empty_id, f"empty {columns[0]}"))
    return strings, problems


def _first_problem(problems: Sequence[tuple[np.ndarray, str]], row: int) -> str | None:
    for mask, reason in problems:
        if mask[row]:
            return reason
    return None


def _take(arrays: Sequence[pa.Array], rows: list[int]) -> list[pa.Array]:
    indices = pa.array(rows, type=pa.int64())
    return [array.take(indices) for array in arrays]


# CSV ---------------------------------------------------------------------------------


def _read_csv_header(name: str) -> tuple[list[str], bool]:
    """Return the header's field names and whether any byte follows the header record."""
    data = bytearray()
    in_quotes = False
    end = -1
    with open(name, "rb") as handle:
        while end < 0:
            block = handle.read(65536)
            if not block:
                break
            start = len(data)
            data += block
            for i in range(start, len(data)):
                byte = data[i]
                if byte == 0x22:
                    in_quotes = not in_quotes
                elif byte in (0x0A, 0x0D) and not in_quotes:
                    end = i
                    break
            if end < 0 and len(data) > _MAX_HEADER_BYTES:
                raise InvalidInputError(f"{name}: line 1: header is longer than 1 MiB")
        rest_follows = False
        if end >= 0:
            after = end + (2 if data[end : end + 2] == b"\r\n" else 1)
            rest_follows = len(data) > after or bool(handle.read(1))
    raw = bytes(data if end < 0 else data[:end])
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise InvalidInputError(f"{name}: line 1: no header row (the file starts empty)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{name}: line 1: header is not valid UTF-8") from None
    try:
        header = next(csv.reader([text], strict=True))
    except (csv.Error, StopIteration):
        raise InvalidInputError(f"{name}: line 1: header cannot be parsed as CSV") from None
    return header, rest_follows


class _InvalidRowHandler:
    """The Python callable pyarrow's CSV reader calls for a malformed record.

    Its own object so that :func:`_open_csv` can see when pyarrow has let go of it.
    """

    __slots__ = ("__weakref__", "_on_invalid")

    def __init__(self, on_invalid: Callable[[pacsv.InvalidRow], str]) -> None:
        self._on_invalid = on_invalid

    def __call__(self, row: pacsv.InvalidRow) -> str:
        return self._on_invalid(row)


class _CsvStream:
    """A pyarrow streaming CSV reader that :func:`_open_csv` can take back."""

    def __init__(self, reader: pacsv.CSVStreamingReader) -> None:
        self._reader: pacsv.CSVStreamingReader | None = reader

    @property
    def schema(self) -> pa.Schema:
        return self._open().schema

    def read_next_batch(self) -> pa.RecordBatch:
        return self._open().read_next_batch()

    def release(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _open(self) -> pacsv.CSVStreamingReader:
        if self._reader is None:
            raise ValueError("the CSV reader is closed")
        return self._reader


@contextlib.contextmanager
def _open_csv(
    name: str,
    *,
    on_invalid: Callable[[pacsv.InvalidRow], str],
    parse_options: Mapping[str, bool],
    convert_options: pacsv.ConvertOptions,
) -> Iterator[_CsvStream]:
    """Open a streaming CSV reader; on leaving, wait until pyarrow is done with it.

    pyarrow's reader finishes its read-ahead on its own I/O threads, and whichever thread
    drops the last reference to the reader also drops the Python ``on_invalid`` handler,
    taking the GIL to do so. If that happens once the interpreter has begun to shut down,
    CPython ends the thread inside a C++ destructor and the process aborts ("terminate
    called without an active exception") after all its work succeeded. So the reader is
    closed and released here, and this returns only when pyarrow has released the
    handler (bounded by ``_CSV_RELEASE_SECONDS``, in case a pyarrow version holds it
    longer): a finished read leaves nothing of ours on pyarrow's threads.
    """
    handler = _InvalidRowHandler(on_invalid)
    released = threading.Event()
    weakref.finalize(handler, released.set)
    try:
        stream = _CsvStream(
            pacsv.open_csv(
                name,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=_CSV_BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(invalid_row_handler=handler, **parse_options),
                convert_options=convert_options,
            )
        )
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(f"{name}: the file cannot be parsed as CSV") from exc
    finally:
        del handler
    try:
        yield stream
    finally:
        stream.release()
        released.wait(_CSV_RELEASE_SECONDS)


def _newlines_per_row(batch: pa.RecordBatch) -> np.ndarray:
    total = np.zeros(batch.num_rows, dtype=np.int64)
    for column in batch.columns:
        counts = pc.count_substring(column, "\n")
        if pc.max(counts).as_py():
            total += counts.to_numpy(zero_copy_only=False)
    return total


class _CsvLines:
    """Maps pyarrow's record numbers to physical lines while a CSV file streams past.

    pyarrow numbers records from 1 (the header) and counts blank lines when
    ``ignore_empty_lines`` is off, but a record with quoted newlines spans several lines.
    ``record`` is the number of the next record to be accounted for; its physical line is
    ``record`` plus the newlines inside all the records before it. Malformed records never
    reach a batch: pyarrow hands them to :meth:`on_invalid` (as it parses, possibly a block
    ahead), and they are queued until the cursor reaches their number.
    """

    def __init__(self, name: str, header: list[str], report: Callable[[RowError], None]) -> None:
        self.name = name
        self.fields = len(header)
        self.report = report
        self.record = 2
        self.inner_newlines = sum(field.count("\n") for field in header)
        self.malformed: deque[tuple[int | None, int, int, bool]] = deque()

    @property
    def line(self) -> int:
        """Physical line of the record at the cursor."""
        return self.record + self.inner_newlines

    def on_invalid(self, row: pacsv.InvalidRow) -> str:
        self.malformed.append(
            (row.number, row.text.count("\n"), row.actual_columns, not row.text.strip())
        )
        return "skip"

    def malformed_before(self, end: int) -> bool:
        """Whether a queued malformed record falls before record number ``end``."""
        return bool(self.malformed) and (self.malformed[0][0] is None or self.malformed[0][0] < end)

    def advance(self, newlines: int) -> None:
        self.inner_newlines += newlines
        self.record += 1

    def flush_malformed(self, *, final: bool = False) -> None:
        """Report the queued malformed records that come before the next parsed row.

        Those are the records numbered up to the cursor, which moves past each one
        reported; with ``final`` (the file has ended), all of them.
        """
        while self.malformed and (
            final or self.malformed[0][0] is None or self.malformed[0][0] <= self.record
        ):
            _, newlines, found, blank = self.malformed.popleft()
            if not blank:
                reason = f"expected {self.fields} fields, found {found}"
                self.report(RowError(self.name, self.line, reason))
            self.advance(newlines)


def _csv_chunks(
    name: str,
    header: list[str],
    columns: tuple[str, ...],
    report: Callable[[RowError], None],
) -> Iterator[list[Row]]:
    """Yield the readable rows of a CSV file, reporting the others with exact lines."""
    lines = _CsvLines(name, header, report)
    with _open_csv(
        name,
        on_invalid=lines.on_invalid,
        parse_options={"newlines_in_values": True, "ignore_empty_lines": False},
        convert_options=pacsv.ConvertOptions(
            column_types={field: pa.binary() for field in header}, strings_can_be_null=False
        ),
    ) as reader:
        if reader.schema.names != header:
            raise InvalidInputError(f"{name}: line 1: header cannot be parsed consistently")
        yield from _parsed_csv_rows(name, reader, lines, columns, report)


def _parsed_csv_rows(
    name: str,
    reader: _CsvStream,
    lines: _CsvLines,
    columns: tuple[str, ...],
    report: Callable[[RowError], None],
) -> Iterator[list[Row]]:
    stripped = [field.strip() for field in reader.schema.names]
    positions = [stripped.index(c) for c in columns]
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInputError(
                f"{name}: the file cannot be parsed as CSV after line {lines.line}"
            ) from exc
        count = batch.num_rows
        if count == 0:
            continue
        newlines = _newlines_per_row(batch)
        blank = _all_empty(batch)
        strings, problems = _checked_strings(
            columns, [batch.column(p) for p in positions], _utf8_or_flag, blank
        )
        if not problems and not blank.any() and not lines.malformed_before(lines.record + count):
            lines.record += count
            lines.inner_newlines += int(newlines.sum())
            yield _rows_from(columns, strings)
            continue
        keep: list[int] = []
        for i in range(count):
            lines.flush_malformed()
            if not blank[i]:
                reason = _first_problem(problems, i)
                if reason is None:
                    keep.append(i)
                else:
                    report(RowError(name, lines.line, reason))
            lines.advance(int(newlines[i]))
        if keep:
            yield _rows_from(columns, _take(strings, keep))
    lines.flush_malformed(final=True)


def _all_empty(batch: pa.RecordBatch) -> np.ndarray:
    """Rows whose every field (required or not) is empty: blank lines."""
    return np.logical_and.reduce(
        [_mask(pc.equal(pc.binary_length(column), 0)) for column in batch.columns]
    )


# Parquet -----------------------------------------------------------------------------


def _open_parquet(name: str) -> pq.ParquetFile:
    """Open a Parquet file for streaming.

    Pre-buffering is off: with it, pyarrow keeps every row group's buffered bytes until
    the file is closed, so memory would grow with the file.
    """
    try:
        return pq.ParquetFile(name, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(
            f"{name}: not a readable Parquet file (truncated or corrupt)"
        ) from exc


def _as_strings(name: str, column: str, array: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        array, bad = _utf8_or_flag(array.cast(pa.binary()))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            array.validate(full=True)
            bad = None
        except pa.ArrowInvalid:
            raw = array.view(pa.binary() if pa.types.is_string(kind) else pa.large_binary())
            array, bad = _utf8_or_flag(raw.cast(pa.binary()))
    else:
        try:
            array = array.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInputError(
                f"{name}: column {column!r} has type {kind}, which cannot be read as text"
            ) from exc
        bad = None
    if array.type != pa.string():
        array = array.cast(pa.string())
    if array.null_count:
        array = array.fill_null("")
    return array, bad


def _parquet_chunks(
    name: str, columns: tuple[str, ...], report: Callable[[RowError], None]
) -> Iterator[list[Row]]:
    """Yield the readable rows of a Parquet file; row ``i`` is reported as line ``i + 2``."""
    parquet = _open_parquet(name)
    first = 0
    try:
        batches = parquet.iter_batches(batch_size=_PARQUET_READ_ROWS, columns=list(columns))
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except (pa.ArrowException, OSError) as exc:
                raise InvalidInputError(
                    f"{name}: not a readable Parquet file (truncated or corrupt after row {first})"
                ) from exc
            strings, problems = _checked_strings(
                columns,
                [batch.column(c) for c in columns],
                lambda array, column: _as_strings(name, column, array),
            )
            if not problems:
                yield _rows_from(columns, strings)
            else:
                keep: list[int] = []
                for i in range(batch.num_rows):
                    reason = _first_problem(problems, i)
                    if reason is None:
                        keep.append(i)
                    else:
                        report(RowError(name, first + i + 2, reason))
                if keep:
                    yield _rows_from(columns, _take(strings, keep))
            first += batch.num_rows
    finally:
        parquet.close()
