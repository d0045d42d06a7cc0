"""Input files as agencies and custodians have them: each shape gives its rows or a clear error.

One table of real-world file shapes (encodings, delimiters, byte-order marks, line ends,
quoted newlines, partial and renamed columns, spreadsheets with numbers where text was
meant, truncated and binary files, empty and header-only files). Each case is read with
:func:`read_rows` as the CLIs read a subject list for ``name_address_v1`` and must give
exactly its rows, or an :class:`InputFileError` whose message names the file and the line.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from psi_core.errors import InputFileError, InvalidInputError, RowError
from psi_core.io import SUBJECT_COLUMNS, InputFile, InputOptions, read_rows
from psi_core.io.xlsx import cell_text

NAME_ADDRESS = {c: "read by name_address_v1" for c in ("given_name", "family_name", "street")}
NAME_ADDRESS |= {"state": "read by name_address_v1", "zip": "read by name_address_v1"}

FULL_HEADER = list(SUBJECT_COLUMNS)
ANA = ["S1", "Ana", "Muñoz", "1980-04-12", "12 Main St", "Boston", "MA", "02138", "123-45-6789"]
BOB = ["S2", "Bob", "O'Brien", "", "9 Elm St", "Austin", "TX", "78701", ""]


def as_row(values: list[str], header: list[str] = FULL_HEADER) -> dict[str, str]:
    row = dict.fromkeys(SUBJECT_COLUMNS, "")
    row.update(zip(header, values, strict=True))
    return row


def csv_text(rows: list[list[str]], delimiter: str = ",", newline: str = "\n") -> str:
    def cell(value: str) -> str:
        if any(ch in value for ch in (delimiter, '"', "\n", "\r")):
            return '"' + value.replace('"', '""') + '"'
        return value

    return "".join(delimiter.join(cell(v) for v in row) + newline for row in rows)


def xlsx_file(path: Path, rows: list[list[object]], formats: dict[int, str] | None = None) -> Path:
    """A workbook whose first sheet holds ``rows``; ``formats`` maps a column to its format."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Subjects"
    for values in rows:
        sheet.append(values)
    for column, number_format in (formats or {}).items():
        for (cell,) in sheet.iter_rows(min_row=2, min_col=column + 1, max_col=column + 1):
            cell.number_format = number_format
    book.create_sheet("Other").append(["nothing", "here"])
    book.save(path)
    return path


@dataclass
class Shape:
    """One real-world file: how to make it, how to read it, and what must come out."""

    name: str
    suffix: str
    make: Callable[[Path], None]
    rows: list[dict[str, str]] | None = None
    error: str | None = None
    line: int | None = None
    options: InputOptions = field(default_factory=InputOptions)
    skip_errors: int = 0


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _text(text: str, encoding: str = "utf-8") -> Callable[[Path], None]:
    return lambda path: path.write_bytes(text.encode(encoding))


BOTH = csv_text([FULL_HEADER, ANA, BOB])
NAMES_ADDRESSES = ["subject_id", "given_name", "family_name", "street", "city", "state", "zip"]
PARTIAL = [ANA[:3] + ANA[4:8], BOB[:3] + BOB[4:8]]
MULTILINE = ["S3", "Cy", "Lee", "", "5 Oak St\nApt 2", "Reno", "NV", "89501", ""]
EXPORT_HEADER = ["ID", "FIRST NAME", "LAST NAME", "ADDRESS", "CITY", "ST", "ZIPCODE"]
MAPPING = (
    ("subject_id", "ID"),
    ("given_name", "FIRST NAME"),
    ("family_name", "LAST NAME"),
    ("street", "ADDRESS"),
    ("state", "ST"),
    ("zip", "ZIPCODE"),
)


def _xlsx_numbers(path: Path) -> None:
    xlsx_file(
        path,
        [
            ["subject_id", "given_name", "family_name", "street", "state", "zip", "tin", "dob"],
            [1001, "Ana", "Muñoz", "12 Main St", "MA", 2138, 123456789, dt.datetime(1980, 4, 12)],
            [1002, "Bob", "Lee", "9 Elm St", "TX", 78701, 987654321.0, None],
            [None, None, None, None, None, None, None, None],
            [1003, "Cy", "Ng", "1 Oak Ave", "NV", 501, 1234567, dt.datetime(1975, 1, 2, 10, 30)],
        ],
        formats={5: "00000", 6: "000-00-0000"},
    )


def _xlsx_text_cells(path: Path) -> None:
    xlsx_file(
        path,
        [
            ["Subject_ID", "Given_Name", "Family_Name", "Street", "State", "ZIP"],
            ["S1", "Ana", "Muñoz", "12 Main St", "MA", "02138"],
            ["", "Nobody", "Here", "1 Way", "MA", "02138"],
        ],
    )


def _xlsx_truncated(path: Path) -> None:
    _xlsx_numbers(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


XLSX_NUMBER_ROWS = [
    {
        **dict.fromkeys(SUBJECT_COLUMNS, ""),
        "subject_id": "1001",
        "given_name": "Ana",
        "family_name": "Muñoz",
        "street": "12 Main St",
        "state": "MA",
        "zip": "02138",
        "tin": "123-45-6789",
        "date_of_birth": "1980-04-12",
    },
    {
        **dict.fromkeys(SUBJECT_COLUMNS, ""),
        "subject_id": "1002",
        "given_name": "Bob",
        "family_name": "Lee",
        "street": "9 Elm St",
        "state": "TX",
        "zip": "78701",
        "tin": "987-65-4321",
    },
    {
        **dict.fromkeys(SUBJECT_COLUMNS, ""),
        "subject_id": "1003",
        "given_name": "Cy",
        "family_name": "Ng",
        "street": "1 Oak Ave",
        "state": "NV",
        "zip": "00501",
        "tin": "001-23-4567",
        "date_of_birth": "1975-01-02 10:30:00",
    },
]

SHAPES = [
    Shape("utf8, comma, LF", ".csv", _text(BOTH), rows=[as_row(ANA), as_row(BOB)]),
    Shape(
        "utf8 with BOM, CRLF",
        ".csv",
        _bytes(b"\xef\xbb\xbf" + csv_text([FULL_HEADER, ANA, BOB], newline="\r\n").encode()),
        rows=[as_row(ANA), as_row(BOB)],
    ),
    Shape(
        "latin-1 named",
        ".csv",
        _text(BOTH, "latin-1"),
        rows=[as_row(ANA), as_row(BOB)],
        options=InputOptions(encoding="latin-1"),
    ),
    Shape(
        "windows-1252 named, smart quote",
        ".csv",
        _text(BOTH.replace("O'Brien", "O\u2019Brien"), "cp1252"),
        rows=[as_row(ANA), as_row([*BOB[:2], "O\u2019Brien", *BOB[3:]])],
        options=InputOptions(encoding="cp1252"),
    ),
    Shape(
        "windows-1252 named, undefined byte",
        ".csv",
        _bytes(BOTH.encode("cp1252").replace(b"Bob", b"B\x81b")),
        error="0x81 is not valid cp1252",
        line=3,
        options=InputOptions(encoding="cp1252"),
    ),
    Shape(
        "UTF-8 with BOM, named as cp1252",
        ".csv",
        _bytes(b"\xef\xbb\xbf" + BOTH.encode()),
        error="UTF-8 byte-order mark: it is UTF-8, read it without --encoding",
        line=1,
        options=InputOptions(encoding="cp1252"),
    ),
    Shape(
        "latin-1 read as UTF-8",
        ".csv",
        _text(BOTH, "latin-1"),
        error="column 'family_name': not valid UTF-8; .*--encoding",
        line=2,
    ),
    Shape(
        "latin-1 header read as UTF-8",
        ".csv",
        _text(
            csv_text([["subject_id", "given_name", "family_name", "street", "state", "zíp"]]),
            "latin-1",
        ),
        error="header is not valid UTF-8",
        line=1,
    ),
    Shape(
        "UTF-16 with BOM",
        ".csv",
        _text(BOTH, "utf-16"),
        error="UTF-16 text; save it as CSV UTF-8, or .*--encoding utf-16",
        line=1,
    ),
    Shape(
        "UTF-16 named",
        ".csv",
        _text(BOTH, "utf-16"),
        rows=[as_row(ANA), as_row(BOB)],
        options=InputOptions(encoding="utf-16"),
    ),
    Shape(
        "UTF-16 without BOM",
        ".csv",
        _text(BOTH, "utf-16-le"),
        error="UTF-16 text",
        line=1,
    ),
    Shape(
        "semicolons",
        ".csv",
        _text(csv_text([FULL_HEADER, ANA, BOB], ";")),
        rows=[as_row(ANA), as_row(BOB)],
    ),
    Shape(
        "tabs",
        ".csv",
        _text(csv_text([FULL_HEADER, ANA, BOB], "\t")),
        rows=[as_row(ANA), as_row(BOB)],
    ),
    Shape(
        "pipes",
        ".csv",
        _text(csv_text([FULL_HEADER, ANA, BOB], "|")),
        rows=[as_row(ANA), as_row(BOB)],
    ),
    Shape(
        "semicolons with commas inside cells, delimiter given",
        ".csv",
        _text(csv_text([FULL_HEADER, [*ANA[:4], "12 Main St, Apt 4", *ANA[5:]]], ";")),
        rows=[as_row([*ANA[:4], "12 Main St, Apt 4", *ANA[5:]])],
        options=InputOptions(delimiter=";"),
    ),
    Shape(
        "wrong delimiter given",
        ".csv",
        _text(csv_text([FULL_HEADER, ANA], ";")),
        error="missing required columns",
        line=1,
        options=InputOptions(delimiter=","),
    ),
    Shape(
        "quoted newlines, then a short row",
        ".csv",
        _text(csv_text([FULL_HEADER, MULTILINE, ANA]) + "S9,Short\n"),
        error="expected 9 fields, found 2",
        line=5,
    ),
    Shape(
        "quoted newlines, CRLF",
        ".csv",
        _text(csv_text([FULL_HEADER, MULTILINE, ANA], newline="\r\n")),
        rows=[as_row(MULTILINE), as_row(ANA)],
    ),
    Shape(
        "names and addresses only",
        ".csv",
        _text(csv_text([NAMES_ADDRESSES, *PARTIAL])),
        rows=[as_row(PARTIAL[0], NAMES_ADDRESSES), as_row(PARTIAL[1], NAMES_ADDRESSES)],
    ),
    Shape(
        "a needed column missing",
        ".csv",
        _text(csv_text([NAMES_ADDRESSES[:-1], *(r[:-1] for r in PARTIAL)])),
        error=r"missing required columns: zip \(read by name_address_v1\)",
        line=1,
    ),
    Shape(
        "headers in other case, with spaces",
        ".csv",
        _text(csv_text([[f" {h.upper()} " for h in FULL_HEADER], ANA])),
        rows=[as_row(ANA)],
    ),
    Shape(
        "export headers mapped",
        ".csv",
        _text(csv_text([EXPORT_HEADER, *PARTIAL])),
        rows=[as_row(PARTIAL[0], NAMES_ADDRESSES), as_row(PARTIAL[1], NAMES_ADDRESSES)],
        options=InputOptions(columns=MAPPING),
    ),
    Shape(
        "export headers not mapped: mappings suggested",
        ".csv",
        _text(csv_text([EXPORT_HEADER, *PARTIAL])),
        error="--column 'given_name=FIRST NAME'.*--column state=ST.*--column zip=ZIPCODE",
        line=1,
    ),
    Shape(
        "mapped to a header the file lacks",
        ".csv",
        _text(BOTH),
        error=r"no column 'POSTCODE' \(mapped to zip",
        line=1,
        options=InputOptions(columns=(("zip", "POSTCODE"),)),
    ),
    Shape(
        "two headers for one column, one spelled as ours",
        ".csv",
        _text(csv_text([[*FULL_HEADER, "ZIP"], [*ANA, "02139"]])),
        rows=[as_row(ANA)],
    ),
    Shape(
        "two headers for one column, neither spelled as ours",
        ".csv",
        _text(csv_text([[*FULL_HEADER[:7], "Zip", "tin", "ZIP"], [*ANA, "02139"]])),
        error="'Zip', 'ZIP' all match zip",
        line=1,
    ),
    Shape(
        "an empty id",
        ".csv",
        _text(csv_text([FULL_HEADER, ANA, ["", *BOB[1:]]])),
        error="line 3, column 'subject_id': empty subject_id",
        line=3,
    ),
    Shape(
        "an empty id, skipped",
        ".csv",
        _text(csv_text([FULL_HEADER, ["", *BOB[1:]], ANA])),
        rows=[as_row(ANA)],
        skip_errors=1,
    ),
    Shape(
        "blank lines between rows",
        ".csv",
        _text(csv_text([FULL_HEADER, ANA]) + "\n\n" + csv_text([BOB])),
        rows=[as_row(ANA), as_row(BOB)],
    ),
    Shape(
        "truncated inside a quoted cell",
        ".csv",
        _text(csv_text([FULL_HEADER, ANA]) + 'S2,Bob,"Lee'),
        error="line 3",
        line=3,
    ),
    Shape("empty file", ".csv", _bytes(b""), error="no header row", line=1),
    Shape("header only", ".csv", _text(csv_text([FULL_HEADER])), rows=[]),
    Shape("header only, no newline", ".csv", _text(",".join(FULL_HEADER)), rows=[]),
    Shape(
        "binary bytes",
        ".csv",
        _bytes(b"subject_id,given_name\nS1,\x00\x01\x02garbage"),
        error="not a text file",
        line=2,
    ),
    Shape(
        "a workbook under a .csv name",
        ".csv",
        lambda path: path.write_bytes(_xlsx_bytes(path)),
        error="give it an .xlsx name",
    ),
    Shape(
        "a Parquet file under a .csv name",
        ".csv",
        lambda path: pq.write_table(pa.table({"subject_id": ["S1"]}), path),
        error="give it a .parquet name",
    ),
    Shape(
        "spreadsheet numbers as people see them",
        ".xlsx",
        _xlsx_numbers,
        rows=XLSX_NUMBER_ROWS,
        options=InputOptions(columns=(("date_of_birth", "dob"),)),
    ),
    Shape(
        "spreadsheet with text cells and an empty id",
        ".xlsx",
        _xlsx_text_cells,
        error="line 3, column 'Subject_ID': empty subject_id",
        line=3,
    ),
    Shape(
        "spreadsheet, a sheet that does not exist",
        ".xlsx",
        _xlsx_text_cells,
        error="no sheet 'People'; the workbook has: 'Subjects', 'Other'",
        options=InputOptions(sheet="People"),
    ),
    Shape(
        "spreadsheet, the other sheet",
        ".xlsx",
        _xlsx_text_cells,
        error="missing required columns",
        line=1,
        options=InputOptions(sheet="Other"),
    ),
    Shape("truncated spreadsheet", ".xlsx", _xlsx_truncated, error="not a readable .xlsx workbook"),
    Shape("text under an .xlsx name", ".xlsx", _text(BOTH), error="not a readable .xlsx workbook"),
    Shape(
        "Parquet with other-case, partial columns",
        ".parquet",
        lambda path: pq.write_table(
            pa.table({h.upper(): [r[i] for r in PARTIAL] for i, h in enumerate(NAMES_ADDRESSES)}),
            path,
        ),
        rows=[as_row(PARTIAL[0], NAMES_ADDRESSES), as_row(PARTIAL[1], NAMES_ADDRESSES)],
    ),
    Shape(
        "Parquet with numeric ZIPs",
        ".parquet",
        lambda path: pq.write_table(
            pa.table(
                {
                    **{h: [r[i] for r in PARTIAL] for i, h in enumerate(NAMES_ADDRESSES[:-1])},
                    "zip": pa.array([2138, 78701], pa.int64()),
                }
            ),
            path,
        ),
        rows=[
            as_row([*PARTIAL[0][:-1], "2138"], NAMES_ADDRESSES),
            as_row(PARTIAL[1], NAMES_ADDRESSES),
        ],
    ),
    Shape(
        "truncated Parquet",
        ".parquet",
        _bytes(b"PAR1\x00\x00"),
        error="not a readable Parquet file",
    ),
]


def _xlsx_bytes(path: Path) -> bytes:
    other = path.with_suffix(".xlsx")
    _xlsx_text_cells(other)
    return other.read_bytes()


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_each_file_shape_gives_its_rows_or_a_clear_error(tmp_path, shape):
    """Each real-world shape reads exactly its rows, or fails naming the file and line."""
    path = tmp_path / f"subjects{shape.suffix}"
    shape.make(path)
    errors: list[RowError] = []

    def read() -> list[dict[str, str]]:
        batches = read_rows(
            path,
            SUBJECT_COLUMNS,
            required=NAME_ADDRESS,
            options=shape.options,
            on_error="skip" if shape.skip_errors else "refuse",
            errors=errors,
        )
        return [row for batch in batches for row in batch]

    if shape.error is None:
        assert read() == shape.rows
        assert len(errors) == shape.skip_errors
        return
    with pytest.raises(InputFileError) as caught:
        read()
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert re.search(shape.error, message), message
    assert caught.value.line == shape.line, message
    if shape.line is not None:
        assert f"{path}: line {shape.line}" in message


def test_the_reading_line_says_what_was_detected_and_what_is_absent(tmp_path):
    """describe() names the format, encoding, delimiter, mapped and absent columns."""
    path = tmp_path / "export.csv"
    path.write_text(csv_text([[*EXPORT_HEADER, "Birth Date"], [*PARTIAL[0], ""]], ";"))
    options = InputOptions(columns=MAPPING[:3] + MAPPING[4:])
    with InputFile(path, options) as source:
        line = source.describe(source.plan(SUBJECT_COLUMNS, ["given_name"]))
    assert line.startswith(f"reading {path} (CSV, UTF-8, detected delimiter ';'): ")
    assert "given_name (from 'FIRST NAME')" in line
    assert "not in the file, read as empty: date_of_birth (to read 'Birth Date': " in line
    assert "--column 'date_of_birth=Birth Date'" in line
    assert "street (to read 'ADDRESS': --column street=ADDRESS)" in line


def test_a_transcoded_copy_is_removed_when_the_file_is_closed(tmp_path):
    """--encoding reads through a temporary UTF-8 copy that does not outlive the InputFile."""
    path = tmp_path / "latin.csv"
    path.write_bytes(BOTH.encode("latin-1"))
    with InputFile(path, InputOptions(encoding="latin-1")) as source:
        copy = Path(source._path)
        assert copy.exists() and copy != path
        assert source.count_rows() == 2
    assert not copy.exists()


def test_an_unknown_encoding_or_mapping_is_refused_before_reading(tmp_path):
    """A codec Python does not know, or a mapping of a column we do not have, is refused."""
    path = tmp_path / "s.csv"
    path.write_text(BOTH)
    with pytest.raises(InvalidInputError, match="unknown encoding 'klingon'"):
        InputFile(path, InputOptions(encoding="klingon"))
    with pytest.raises(InvalidInputError, match="'middle_name', which this file does not use"):
        read_rows(path, SUBJECT_COLUMNS, options=InputOptions(columns=(("middle_name", "M"),)))


def test_csv_options_are_refused_for_other_formats(tmp_path):
    """--encoding on a workbook or --sheet on a CSV file is a mistake, said so."""
    _xlsx_text_cells(tmp_path / "s.xlsx")
    (tmp_path / "s.csv").write_text(BOTH)
    with pytest.raises(InputFileError, match="CSV files only"):
        InputFile(tmp_path / "s.xlsx", InputOptions(encoding="latin-1"))
    with pytest.raises(InputFileError, match=r"\.xlsx workbooks only"):
        InputFile(tmp_path / "s.csv", InputOptions(sheet="Sheet1"))


def test_counting_agrees_with_reading_for_every_format(tmp_path):
    """count_rows gives the number of rows read, for CSV (transcoded), .xlsx and Parquet."""
    _xlsx_numbers(tmp_path / "n.xlsx")
    (tmp_path / "l.csv").write_bytes(BOTH.encode("latin-1"))
    with InputFile(tmp_path / "n.xlsx") as source:
        assert source.count_rows() == 4  # the empty row is counted, as CSV blank lines are not
    with InputFile(tmp_path / "l.csv", InputOptions(encoding="latin-1")) as source:
        assert source.count_rows() == 2


@pytest.mark.parametrize(
    ("value", "number_format", "text"),
    [
        (2138, "00000", "02138"),
        (2138, "General", "2138"),
        (21380001, "00000-0000", "02138-0001"),
        (123456789, "000-00-0000", "123-45-6789"),
        (123456789, "000\\-00\\-0000", "123-45-6789"),
        (123456789.0, "General", "123456789"),
        (1234567890123, "0", "1234567890123"),
        (1e20, "General", "100000000000000000000"),
        (0.1, "General", "0.1"),
        (1.5e-7, "General", "0.00000015"),
        (-42, "00000", "-42"),
        (True, "General", "TRUE"),
        (dt.datetime(1980, 4, 12), "mm/dd/yyyy", "1980-04-12"),
        (dt.date(1980, 4, 12), "mm/dd/yyyy", "1980-04-12"),
        (None, "General", ""),
        ("  kept  ", "@", "  kept  "),
    ],
)
def test_cells_read_as_the_text_a_person_sees(value, number_format, text):
    """Numbers keep their leading zeros and every digit; nothing turns into 1.2E+08."""
    assert cell_text(value, number_format) == text
