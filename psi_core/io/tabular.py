"""Streaming reading and writing of the project's CSV, spreadsheet and Parquet files.

Every file people hand to the system is a CSV file (header row), an ``.xlsx`` workbook
(first sheet or a named one, header row) or a Parquet file; the format is chosen by the
suffix (``.csv``, ``.xlsx``, ``.parquet``, ``.pq``, in any case). Empty cells mean unknown
and are read as ``""``. Files are written as UTF-8 CSV or Parquet only.

How a file is read is resolved once, by :class:`InputFile`, before any row is read:

* CSV encoding: UTF-8 with or without a byte-order mark, unless
  :attr:`InputOptions.encoding` names another (``latin-1``, ``cp1252``, ...); such a file
  is first transcoded, streaming, to a temporary UTF-8 copy (a byte that is not valid in
  that encoding is reported with its line). UTF-16 and UTF-32 are recognised by their
  byte-order mark and refused unless named; binary files, workbooks and Parquet files
  under a ``.csv`` name are recognised and refused with advice.
* CSV delimiter: comma, semicolon, tab or pipe, detected from the header line (the one
  occurring most often outside quotes) unless :attr:`InputOptions.delimiter` is given.
* Columns: the file's headers match ours case-insensitively (surrounding spaces ignored),
  or by an explicit mapping (:attr:`InputOptions.columns`, ours to theirs). Only the
  *required* columns must be present; other known columns that are absent read as ``""``.
  A missing required column is named, with a suggested mapping when a header looks like a
  known alias (``first_name``, ``surname``, ``zipcode``, ``ssn``, ``dob``, ...).

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

import codecs
import contextlib
import csv
import io
import itertools
import os
import re
import secrets
import shlex
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from psi_core.errors import InputFileError, InvalidInputError, NotFoundError, RowError
from psi_core.io import xlsx

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "RECORD_COLUMNS",
    "SUBJECT_COLUMNS",
    "TRUTH_COLUMNS",
    "ColumnPlan",
    "InputFile",
    "InputOptions",
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
FileFormat = Literal["csv", "parquet", "xlsx"]

_SUFFIXES: Final[dict[str, FileFormat]] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
}
_CSV_BLOCK_BYTES: Final = 4 << 20
_CSV_RELEASE_SECONDS: Final = 10.0
_MAX_HEADER_BYTES: Final = 1 << 20
_PARQUET_READ_ROWS: Final = 65536
_DEFAULT_ROW_GROUP_ROWS: Final = 131072

Row = dict[str, str]


def file_format(path: str | os.PathLike[str]) -> FileFormat:
    """Return ``"csv"``, ``"xlsx"`` or ``"parquet"`` for ``path`` by its suffix.

    Raises :class:`InputFileError` for any other suffix.
    """
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        advice = (
            "an Excel 97-2003 workbook: save it as .xlsx or as CSV UTF-8"
            if suffix == ".xls"
            else "use .csv, .xlsx, .parquet or .pq"
        )
        raise InputFileError(
            os.fspath(path), f"unknown file type {suffix or '(no suffix)'!r}; {advice}"
        ) from None


@dataclass(frozen=True)
class InputOptions:
    """How to read an input file when its defaults do not fit (all optional).

    ``encoding`` (CSV): a Python codec name; None or any UTF-8 name means UTF-8 with or
    without a byte-order mark. ``delimiter`` (CSV): one character; None detects it.
    ``sheet`` (.xlsx): a sheet name; None means the first sheet. ``columns``: pairs
    ``(ours, theirs)``, the file's header that holds our column.
    """

    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    columns: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ColumnPlan:
    """Which of our columns a file holds, and where.

    ``columns`` are ours in the order rows have them; ``sources[c]`` is the file's own
    header for our column ``c`` (None when the file lacks it and it reads as ``""``).
    """

    columns: tuple[str, ...]
    sources: Mapping[str, str | None]
    positions: Mapping[str, int]
    hints: Mapping[str, str]

    @property
    def present(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c in self.positions)

    @property
    def absent(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.positions)


_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "subject_id": ("id", "subject", "subjectno", "personid", "anumber", "aliennumber", "caseid"),
    "record_id": ("id", "record", "recordno", "taxpayerid", "accountid", "accountnumber"),
    "given_name": ("firstname", "fname", "first", "given", "givennames", "forename", "firstnm"),
    "family_name": ("lastname", "lname", "surname", "last", "family", "familynames", "lastnm"),
    "date_of_birth": ("dob", "birthdate", "dateofbirth", "birthday", "dtofbirth", "birthdt"),
    "street": (
        "address",
        "address1",
        "addr",
        "addr1",
        "streetaddress",
        "addressline1",
        "street1",
        "line1",
        "mailingaddress",
        "residenceaddress",
    ),
    "city": ("town", "cityname", "municipality"),
    "state": ("st", "statecode", "province", "stateabbr"),
    "zip": ("zipcode", "postalcode", "postcode", "zip5", "zip4", "postal"),
    "tin": ("ssn", "itin", "socialsecuritynumber", "taxid", "taxpayeridnumber", "ssnitin"),
}
_NOT_ALNUM: Final = re.compile(r"[^0-9a-z]+")
_DELIMITER_NAMES: Final = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
_UTF8_NAMES: Final = frozenset({"utf-8", "utf-8-sig"})
_SNIFF_BYTES: Final = 65536
_TRANSCODE_BLOCK: Final = 1 << 20


def _alias_key(header: str) -> str:
    return _NOT_ALNUM.sub("", header.casefold())


def _mapping_flag(ours: str, theirs: str) -> str:
    return f"--column {shlex.quote(f'{ours}={theirs}')}"


def _lookalike(ours: str, header: Sequence[str], taken: set[int]) -> str | None:
    """A header (not already used) that looks like a known alias of ``ours``."""
    keys = {_alias_key(ours), *_ALIASES.get(ours, ())}
    for index, name in enumerate(header):
        if index not in taken and _alias_key(name) in keys:
            return name
    return None


def _plan_columns(
    name: str,
    header: Sequence[str],
    columns: Sequence[str],
    required: Sequence[str] | Mapping[str, str],
    mapping: Mapping[str, str],
) -> ColumnPlan:
    """Match our ``columns`` to a file's ``header``; see :class:`InputFile.plan`."""
    unknown = sorted(set(mapping) - set(columns))
    if unknown:
        raise InvalidInputError(
            f"--column names {', '.join(map(repr, unknown))}, which this file does not use; "
            f"its columns are: {', '.join(columns)}"
        )
    folded: dict[str, list[int]] = {}
    for index, field_name in enumerate(header):
        folded.setdefault(field_name.strip().casefold(), []).append(index)
    positions: dict[str, int] = {}
    for ours in columns:
        theirs = mapping.get(ours, ours)
        found = folded.get(theirs.strip().casefold(), [])
        if len(found) > 1:
            exact = [i for i in found if header[i].strip() == theirs.strip()]
            if len(exact) != 1:
                shown = ", ".join(repr(header[i]) for i in found)
                raise InputFileError(
                    name,
                    f"columns {shown} all match {ours}; rename all but one",
                    line=1,
                )
            found = exact
        if found:
            positions[ours] = found[0]
        elif ours in mapping:
            raise InputFileError(
                name, f"no column {theirs!r} (mapped to {ours} by --column)", line=1
            )
    doubled = sorted(
        {c for c in columns if c in positions and list(positions.values()).count(positions[c]) > 1}
    )
    if doubled:
        raise InputFileError(
            name, f"one column is mapped to several of ours: {', '.join(doubled)}", line=1
        )
    taken = set(positions.values())
    hints: dict[str, str] = {}
    for ours in columns:
        if ours not in positions:
            lookalike = _lookalike(ours, header, taken)
            if lookalike is not None:
                hints[ours] = lookalike
    needed = dict(required) if isinstance(required, Mapping) else dict.fromkeys(required, "")
    missing = [c for c in columns if c in needed and c not in positions]
    if missing:
        parts = []
        for column in missing:
            why = f" ({needed[column]})" if needed[column] else ""
            parts.append(f"{column}{why}")
        message = f"missing required columns: {', '.join(parts)}"
        suggestions = [_mapping_flag(c, hints[c]) for c in missing if c in hints]
        if suggestions:
            message += f"; the file's headers look like them: add {' '.join(suggestions)}"
        else:
            message += "; if the file names them differently, map them with --column OURS=THEIRS"
        raise InputFileError(name, message, line=1)
    sources = {c: (header[positions[c]].strip() if c in positions else None) for c in columns}
    return ColumnPlan(tuple(columns), sources, positions, hints)


class InputFile:
    """An input file opened for reading, its format, encoding, delimiter and header resolved.

    Opening checks the file exists and is a regular file, recognises what it is, reads
    its header (CSV and .xlsx) or schema (Parquet) and, for a CSV file in another
    encoding, makes the temporary UTF-8 copy; every problem is an
    :class:`~psi_core.errors.InputFileError` naming the file (and line). :meth:`plan`
    then matches our columns to the file's, :meth:`read_rows` streams rows and
    :meth:`count_rows` counts them; both may be called more than once. Close it (or use
    it as a context manager) to remove the temporary copy.
    """

    def __init__(self, path: str | os.PathLike[str], options: InputOptions | None = None) -> None:
        self.options = options or InputOptions()
        self.name = os.fspath(path)
        self.format = file_format(self.name)
        self._path = self.name
        self._copy: str | None = None
        self._cleanup: weakref.finalize | None = None
        self.encoding = "UTF-8"
        self.delimiter = ","
        self.delimiter_detected = False
        self.sheet: str | None = None
        self.has_rows = True
        if not os.path.exists(self.name):
            raise InputFileError(self.name, "no such file")
        if not os.path.isfile(self.name):
            raise InputFileError(self.name, "not a regular file")
        if self.format != "csv" and (self.options.encoding or self.options.delimiter):
            raise InputFileError(self.name, "--encoding and --delimiter apply to CSV files only")
        if self.format != "xlsx" and self.options.sheet:
            raise InputFileError(self.name, "--sheet applies to .xlsx workbooks only")
        if self.format == "csv":
            self._open_csv_file()
        elif self.format == "xlsx":
            with xlsx.open_sheet(self.name, self.options.sheet) as sheet:
                self.header = sheet.header
                self.sheet = sheet.title
        else:
            parquet = _open_parquet(self.name)
            try:
                self.header = list(parquet.schema_arrow.names)
            finally:
                parquet.close()

    def _open_csv_file(self) -> None:
        encoding = self._check_encoding()
        self._sniff(explicit=encoding is not None)
        if encoding is not None:
            self.encoding = f"{self.options.encoding} (transcoded to UTF-8)"
            self._copy = _transcode(self.name, encoding)
            self._cleanup = weakref.finalize(self, _remove, self._copy)
            self._path = self._copy
        header, self.has_rows, self.delimiter = _read_csv_header(
            self._path, self.name, self.options.delimiter
        )
        self.delimiter_detected = self.options.delimiter is None
        self.header = header

    def _check_encoding(self) -> str | None:
        """The codec to transcode from, or None for UTF-8."""
        given = self.options.encoding
        if given is None:
            return None
        try:
            codec = codecs.lookup(given).name
        except LookupError:
            raise InvalidInputError(f"--encoding: unknown encoding {given!r}") from None
        return None if codec in _UTF8_NAMES else codec

    def _sniff(self, *, explicit: bool) -> None:
        """Refuse, with advice, what is not a CSV text file in the expected encoding."""
        with open(self.name, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
        if head.startswith(b"PK\x03\x04"):
            raise InputFileError(
                self.name,
                "this is a ZIP archive, probably an .xlsx workbook: give it an .xlsx name",
            )
        if head.startswith(b"\xd0\xcf\x11\xe0"):
            raise InputFileError(
                self.name, "this is an Excel 97-2003 workbook: save it as .xlsx or as CSV UTF-8"
            )
        if head.startswith(b"PAR1"):
            raise InputFileError(self.name, "this is a Parquet file: give it a .parquet name")
        if explicit:
            if head.startswith(b"\xef\xbb\xbf"):
                raise InputFileError(
                    self.name,
                    "the file starts with a UTF-8 byte-order mark: it is UTF-8, read it "
                    "without --encoding",
                    line=1,
                )
            return
        utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff")) or (
            len(head) >= 4 and head.count(b"\x00") * 3 >= len(head)
        )
        if utf16:
            wide = "UTF-16"
            if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
                wide = "UTF-32"
            raise InputFileError(
                self.name,
                f"the file is {wide} text; save it as CSV UTF-8, or name its encoding "
                f"with --encoding {wide.lower()}",
                line=1,
            )
        nul = head.find(b"\x00")
        if nul >= 0:
            raise InputFileError(
                self.name,
                "not a text file (a NUL byte); is it a spreadsheet or a database file?",
                line=head.count(b"\n", 0, nul) + 1,
            )

    def plan(
        self,
        columns: Sequence[str],
        required: Sequence[str] | Mapping[str, str] | None = None,
    ) -> ColumnPlan:
        """Match our ``columns`` to the file's headers.

        ``required`` (default: all of ``columns``) must be present; it may map each
        column to why it is needed (e.g. ``"read by name_dob_v1"``), which the error
        names. ``columns[0]`` is the row's id and is always required. Raises
        :class:`InputFileError` for a missing required column (with a suggested
        ``--column`` when a header looks like one), an ambiguous header, or a mapping to
        a header the file does not have.
        """
        columns = _check_columns(columns)
        needed: dict[str, str] = {}
        if required is None:
            needed = dict.fromkeys(columns, "")
        elif isinstance(required, Mapping):
            needed = dict(required)
        else:
            needed = dict.fromkeys(required, "")
        needed.setdefault(columns[0], "")
        unknown = sorted(set(needed) - set(columns))
        if unknown:
            raise ValueError(f"required columns {unknown} are not among the columns")
        return _plan_columns(self.name, self.header, columns, needed, dict(self.options.columns))

    def describe(self, plan: ColumnPlan) -> str:
        """One line saying how the file is read and which of our columns it gives."""
        if self.format == "csv":
            delimiter = _DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))
            found = "detected" if self.delimiter_detected else "given"
            how = f"CSV, {self.encoding}, {found} delimiter {delimiter}"
        elif self.format == "xlsx":
            how = f"workbook, sheet {self.sheet!r}"
        else:
            how = "Parquet"
        read = []
        for column in plan.present:
            source = plan.sources[column]
            read.append(column if source == column else f"{column} (from {source!r})")
        text = f"reading {self.name} ({how}): columns {', '.join(read)}"
        if plan.absent:
            absent = []
            for column in plan.absent:
                hint = plan.hints.get(column)
                if hint is not None:
                    column += f" (to read {hint!r}: {_mapping_flag(column, hint)})"
                absent.append(column)
            text += f"; not in the file, read as empty: {', '.join(absent)}"
        return text

    def read_rows(
        self,
        plan: ColumnPlan | Sequence[str],
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        on_error: OnError = "refuse",
        errors: list[RowError] | None = None,
    ) -> Iterator[list[Row]]:
        """Stream the rows as batches of ``{column: str}`` dicts; see :func:`read_rows`."""
        report = _reporter(batch_rows, on_error, errors)
        if not isinstance(plan, ColumnPlan):
            plan = self.plan(plan)
        if self.format == "csv":
            chunks = _csv_chunks(self, plan, report) if self.has_rows else iter(())
        elif self.format == "xlsx":
            chunks = _xlsx_chunks(self, plan, report)
        else:
            chunks = _parquet_chunks(self.name, plan, report)
        return _rebatch(chunks, batch_rows)

    def estimate_rows(self) -> tuple[int, bool]:
        """(rows, exact) for a progress bar: Parquet's metadata and a CSV sample cost no
        pass over the file (:func:`estimate_rows`); a workbook is counted."""
        if self.format == "xlsx":
            return self.count_rows(), True
        return estimate_rows(self.name)

    def count_rows(self) -> int:
        """The number of data rows, without building any row; see :func:`count_rows`."""
        if self.format == "parquet":
            parquet = _open_parquet(self.name)
            try:
                return parquet.metadata.num_rows
            finally:
                parquet.close()
        if self.format == "xlsx":
            with xlsx.open_sheet(self.name, self.options.sheet) as sheet:
                return sum(1 for _ in sheet.rows())
        return _count_csv_rows(self)

    def close(self) -> None:
        """Remove the temporary UTF-8 copy, if one was made. Idempotent."""
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> InputFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _transcode(name: str, encoding: str) -> str:
    """Copy ``name`` from ``encoding`` to a temporary UTF-8 file, streaming; return its path.

    A byte sequence that is not valid in ``encoding`` is an :class:`InputFileError` with
    the physical line it is on (lines counted by ``\\n``).
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    fd, copy = tempfile.mkstemp(prefix="psi-input-", suffix=".csv")
    lines = 1
    try:
        with open(name, "rb") as source, open(fd, "w", encoding="utf-8", newline="") as target:
            while True:
                block = source.read(_TRANSCODE_BLOCK)
                try:
                    text = decoder.decode(block, final=not block)
                except UnicodeDecodeError as exc:
                    before = exc.object[: exc.start]
                    line = lines + before.decode(encoding, errors="replace").count("\n")
                    shown = " ".join(f"0x{b:02x}" for b in exc.object[exc.start : exc.end][:4])
                    raise InputFileError(
                        name, f"{shown} is not valid {encoding} text", line=line
                    ) from None
                lines += text.count("\n")
                target.write(text)
                if not block:
                    break
    except BaseException:
        _remove(copy)
        raise
    return copy


def _reporter(
    batch_rows: int, on_error: OnError, errors: list[RowError] | None
) -> Callable[[RowError], None]:
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    if on_error == "refuse":
        return _raise
    if on_error == "skip":
        if errors is None:
            raise ValueError('on_error="skip" needs an errors list to receive the skipped rows')
        return errors.append
    raise ValueError(f'on_error must be "refuse" or "skip", got {on_error!r}')


def read_rows(
    path: str | os.PathLike[str],
    columns: Sequence[str],
    *,
    required: Sequence[str] | Mapping[str, str] | None = None,
    options: InputOptions | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    on_error: OnError = "refuse",
    errors: list[RowError] | None = None,
) -> Iterator[list[Row]]:
    """Stream the rows of a CSV, .xlsx or Parquet file as batches of ``{column: str}`` dicts.

    ``columns`` are our columns; ``required`` (default: all of them) must be in the file,
    the others read as ``""`` when absent (see :meth:`InputFile.plan`). The file may hold
    more columns, which are ignored. ``columns[0]`` is the row's id and must not be empty
    (after trimming whitespace). Each yielded dict has exactly ``columns`` as keys and
    ``str`` values, ``""`` where the cell is empty or null.

    Batching is deterministic: batch ``k`` holds the readable rows ``k * batch_rows`` up
    to ``(k + 1) * batch_rows`` in file order, so every batch but the last has exactly
    ``batch_rows`` rows and a batch index can serve as a resumable shard id. A header-only
    file yields no batch. Rows whose every field is empty (blank lines) are passed over
    without error.

    A row that cannot be read (wrong number of fields, invalid UTF-8 in a column that is
    read, empty id) is a :class:`RowError`. With ``on_error="refuse"`` it is raised when
    the iteration reaches it (earlier batches have then already been yielded); with
    ``"skip"`` it is appended to ``errors``, which must then be a list, and the row is
    left out.

    The file's existence, kind, encoding and header are checked before this returns;
    every problem with the file, then or while streaming, is an
    :class:`InputFileError` (never a pyarrow or openpyxl exception).
    """
    _reporter(batch_rows, on_error, errors)
    source = InputFile(path, options)
    try:
        plan = source.plan(columns, required)
        rows = source.read_rows(plan, batch_rows=batch_rows, on_error=on_error, errors=errors)
    except BaseException:
        source.close()
        raise
    return _closing(rows, source)


_ESTIMATE_SAMPLE_BYTES = 1 << 20


def estimate_rows(path: str | os.PathLike[str]) -> tuple[int, bool]:
    """A quick row count for a progress bar: (rows, exact), never a pass over the file.

    Parquet: the metadata's count (exact). CSV: the file size over the mean line length
    of its first MiB, less the header (an estimate: blank lines and quoted line breaks
    count as rows).
    """
    name = os.fspath(path)
    fmt = file_format(name)
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


def _closing(rows: Iterator[list[Row]], source: InputFile) -> Iterator[list[Row]]:
    with source:
        yield from rows


def count_rows(path: str | os.PathLike[str], *, options: InputOptions | None = None) -> int:
    """Return the number of data rows in a file, without building any row.

    Parquet: read from the metadata. CSV: one streaming pass that parses only the first
    column; blank lines and the header are not counted, rows with the wrong number of
    fields are. .xlsx: one pass over the sheet's rows. The result is therefore an upper
    bound on the rows :func:`read_rows` yields, and equal to it for a clean file. Raises
    as :func:`read_rows` does.
    """
    with InputFile(path, options) as source:
        return source.count_rows()


def _count_csv_rows(source: InputFile) -> int:
    header = source.header
    if not header or not source.has_rows:
        return 0
    name = source.name
    invalid = 0

    def count_invalid(row: pacsv.InvalidRow) -> str:
        nonlocal invalid
        if row.text.strip():
            invalid += 1
        return "skip"

    total = 0
    with _open_csv(
        source,
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
            raise InputFileError(name, "the file cannot be parsed as CSV") from exc
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
        if self._format == "xlsx":
            raise InvalidInputError(
                f"{self._path}: unknown file type '.xlsx' for writing; use .csv, .parquet or .pq"
            )
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


def _rebatch(chunks: Iterator[list[Row]], batch_rows: int) -> Iterator[list[Row]]:
    pending: list[Row] = []
    for chunk in chunks:
        pending.extend(chunk)
        while len(pending) >= batch_rows:
            yield pending[:batch_rows]
            del pending[:batch_rows]
    if pending:
        yield pending


def _rows_from(plan: ColumnPlan, arrays: Sequence[pa.Array]) -> list[Row]:
    """Rows with every planned column: ``arrays`` hold the present ones, in plan order."""
    lists = [a.to_pylist() for a in arrays]
    count = len(lists[0])
    by_column = dict(zip(plan.present, lists, strict=True))
    ordered = [by_column.get(c) or [""] * count for c in plan.columns]
    names = plan.columns
    return list(map(dict, map(zip, itertools.repeat(names), zip(*ordered, strict=True))))


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


_NOT_UTF8: Final = "not valid UTF-8"
_NOT_UTF8_CSV: Final = (
    "not valid UTF-8; if the file was saved as Latin-1 or Windows-1252, read it with "
    "--encoding cp1252"
)

Problem = tuple[np.ndarray, str, str]
"""A row mask, the file's column it concerns, and the reason."""


def _checked_strings(
    plan: ColumnPlan,
    arrays: Sequence[pa.Array],
    to_strings: Callable[[pa.Array, str], tuple[pa.Array, np.ndarray | None]],
    blank: np.ndarray | None = None,
    not_utf8: str = _NOT_UTF8,
) -> tuple[list[pa.Array], list[Problem]]:
    """Convert the present columns to strings and list each kind of unreadable row.

    Returns the string arrays (unreadable cells as ``""``) and, for each problem present,
    a row mask with its column and reason. ``blank`` rows are exempt from the empty-id rule.
    """
    strings: list[pa.Array] = []
    problems: list[Problem] = []
    for column, array in zip(plan.present, arrays, strict=True):
        source = plan.sources[column] or column
        converted, bad = to_strings(array, source)
        strings.append(converted)
        if bad is not None:
            problems.append((bad, source, not_utf8))
    empty_id = _mask(pc.equal(pc.utf8_trim_whitespace(strings[0]), ""))
    if blank is not None:
        empty_id &= ~blank
    if empty_id.any():
        id_column = plan.columns[0]
        problems.append((empty_id, plan.sources[id_column] or id_column, f"empty {id_column}"))
    return strings, problems


def _first_problem(problems: Sequence[Problem], row: int) -> tuple[str, str] | None:
    for mask, column, reason in problems:
        if mask[row]:
            return column, reason
    return None


def _take(arrays: Sequence[pa.Array], rows: list[int]) -> list[pa.Array]:
    indices = pa.array(rows, type=pa.int64())
    return [array.take(indices) for array in arrays]


# CSV ---------------------------------------------------------------------------------


def _read_csv_header(path: str, name: str, delimiter: str | None) -> tuple[list[str], bool, str]:
    """The header's field names, whether any byte follows the header record, and the
    delimiter (``delimiter``, or the candidate seen most often outside quotes)."""
    data = bytearray()
    in_quotes = False
    end = -1
    with open(path, "rb") as handle:
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
                raise InputFileError(name, "header is longer than 1 MiB", line=1)
        rest_follows = False
        if end >= 0:
            after = end + (2 if data[end : end + 2] == b"\r\n" else 1)
            rest_follows = len(data) > after or bool(handle.read(1))
    raw = bytes(data if end < 0 else data[:end])
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise InputFileError(name, "no header row (the file starts empty)", line=1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(name, f"header is {_NOT_UTF8_CSV}", line=1) from None
    if delimiter is None:
        delimiter = _detect_delimiter(text)
    elif len(delimiter) != 1 or delimiter in '"\r\n':
        raise InvalidInputError(f"--delimiter must be one character, got {delimiter!r}")
    try:
        header = next(csv.reader([text], delimiter=delimiter, strict=True))
    except (csv.Error, StopIteration):
        raise InputFileError(name, "header cannot be parsed as CSV", line=1) from None
    return header, rest_follows, delimiter


def _detect_delimiter(header: str) -> str:
    """The delimiter candidate (comma, semicolon, tab, pipe) most frequent outside quotes."""
    counts = dict.fromkeys(_DELIMITER_NAMES, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts, key=lambda c: counts[c])
    return best if counts[best] else ","


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
    source: InputFile,
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
                source._path,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=_CSV_BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(
                    delimiter=source.delimiter, invalid_row_handler=handler, **parse_options
                ),
                convert_options=convert_options,
            )
        )
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(source.name, "the file cannot be parsed as CSV") from exc
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
                if found == 1 and self.fields > 1:
                    reason += " (is the delimiter right? see --delimiter)"
                self.report(RowError(self.name, self.line, reason))
            self.advance(newlines)


def _csv_chunks(
    source: InputFile, plan: ColumnPlan, report: Callable[[RowError], None]
) -> Iterator[list[Row]]:
    """Yield the readable rows of a CSV file, reporting the others with exact lines."""
    name, header = source.name, source.header
    lines = _CsvLines(name, header, report)
    with _open_csv(
        source,
        on_invalid=lines.on_invalid,
        parse_options={"newlines_in_values": True, "ignore_empty_lines": False},
        convert_options=pacsv.ConvertOptions(
            column_types={field: pa.binary() for field in header}, strings_can_be_null=False
        ),
    ) as reader:
        if reader.schema.names != header:
            raise InputFileError(name, "header cannot be parsed consistently", line=1)
        yield from _parsed_csv_rows(name, reader, lines, plan, report)


def _parsed_csv_rows(
    name: str,
    reader: _CsvStream,
    lines: _CsvLines,
    plan: ColumnPlan,
    report: Callable[[RowError], None],
) -> Iterator[list[Row]]:
    positions = [plan.positions[c] for c in plan.present]
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowException, OSError) as exc:
            raise InputFileError(
                name, f"the file cannot be parsed as CSV after line {lines.line}"
            ) from exc
        count = batch.num_rows
        if count == 0:
            continue
        newlines = _newlines_per_row(batch)
        blank = _all_empty(batch)
        strings, problems = _checked_strings(
            plan, [batch.column(p) for p in positions], _utf8_or_flag, blank, _NOT_UTF8_CSV
        )
        if not problems and not blank.any() and not lines.malformed_before(lines.record + count):
            lines.record += count
            lines.inner_newlines += int(newlines.sum())
            yield _rows_from(plan, strings)
            continue
        keep: list[int] = []
        for i in range(count):
            lines.flush_malformed()
            if not blank[i]:
                problem = _first_problem(problems, i)
                if problem is None:
                    keep.append(i)
                else:
                    report(RowError(name, lines.line, problem[1], problem[0]))
            lines.advance(int(newlines[i]))
        if keep:
            yield _rows_from(plan, _take(strings, keep))
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
        raise InputFileError(name, "not a readable Parquet file (truncated or corrupt)") from exc


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
            raise InputFileError(
                name, f"has type {kind}, which cannot be read as text", column=column
            ) from exc
        bad = None
    if array.type != pa.string():
        array = array.cast(pa.string())
    if array.null_count:
        array = array.fill_null("")
    return array, bad


def _parquet_chunks(
    name: str, plan: ColumnPlan, report: Callable[[RowError], None]
) -> Iterator[list[Row]]:
    """Yield the readable rows of a Parquet file; row ``i`` is reported as line ``i + 2``."""
    parquet = _open_parquet(name)
    first = 0
    names = parquet.schema_arrow.names
    sources = [names[plan.positions[c]] for c in plan.present]
    try:
        batches = parquet.iter_batches(batch_size=_PARQUET_READ_ROWS, columns=sources)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except (pa.ArrowException, OSError) as exc:
                raise InputFileError(
                    name,
                    f"not a readable Parquet file (truncated or corrupt after row {first})",
                ) from exc
            strings, problems = _checked_strings(
                plan,
                [batch.column(i) for i in range(len(sources))],
                lambda array, column: _as_strings(name, column, array),
            )
            if not problems:
                yield _rows_from(plan, strings)
            else:
                keep: list[int] = []
                for i in range(batch.num_rows):
                    problem = _first_problem(problems, i)
                    if problem is None:
                        keep.append(i)
                    else:
                        report(RowError(name, first + i + 2, problem[1], problem[0]))
                if keep:
                    yield _rows_from(plan, _take(strings, keep))
            first += batch.num_rows
    finally:
        parquet.close()


# Spreadsheets ------------------------------------------------------------------------


def _xlsx_chunks(
    source: InputFile, plan: ColumnPlan, report: Callable[[RowError], None]
) -> Iterator[list[Row]]:
    """Yield the readable rows of a sheet, as the text its cells show (see ``xlsx``)."""
    positions = [(c, plan.positions[c]) for c in plan.columns if c in plan.positions]
    id_column = plan.columns[0]
    id_position = plan.positions[id_column]
    id_source = plan.sources[id_column] or id_column
    chunk: list[Row] = []
    with xlsx.open_sheet(source.name, source.options.sheet) as sheet:
        for number, cells in sheet.rows():
            if not any(cells):
                continue
            width = len(cells)
            if id_position >= width or not cells[id_position].strip():
                report(RowError(source.name, number, f"empty {id_column}", id_source))
                continue
            row = dict.fromkeys(plan.columns, "")
            for column, position in positions:
                if position < width:
                    row[column] = cells[position]
            chunk.append(row)
            if len(chunk) >= _PARQUET_READ_ROWS:
                yield chunk
                chunk = []
    if chunk:
        yield chunk
