"""Reading .xlsx workbooks, streaming, with every cell as the text a person sees.

This module is the one owner of ``openpyxl``. A workbook is opened read-only, so rows
stream from the sheet's XML and memory does not grow with the number of rows (the
workbook's shared-string table is loaded whole, as Excel itself does).

A cell's text is what the spreadsheet shows, so that identifiers stored as numbers
survive: a ZIP code typed as 02138 and kept as the number 2138 with the format
``00000`` reads ``"02138"``; a nine-digit TIN reads as its nine digits (with the dashes
of a ``000-00-0000`` format), never as ``123456789.0`` or ``1.23E+08``. Whole numbers
read as their digits, without grouping separators; other numbers in plain decimal
notation; dates as ``YYYY-MM-DD`` (the layout our recipes read), with the time after a
space when it is not midnight; booleans as ``TRUE``/``FALSE``; a formula as its value
when the workbook was last saved. Errors are :class:`~psi_core.errors.InputFileError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Final

from psi_core.errors import InputFileError

__all__ = ["Sheet", "cell_text", "open_sheet"]

_ZERO_PATTERN: Final = re.compile(r"0+(?:[- ]0+)*")
_FORMAT_DECORATION: Final = re.compile(r'\\(.)|"([^"]*)"|\[[^\]]*\]')


def _digit_layout(number_format: str | None) -> str | None:
    """The zero pattern of a format such as ``00000`` or ``000-00-0000``, else None."""
    if not number_format:
        return None
    section = number_format.split(";", 1)[0]
    plain = _FORMAT_DECORATION.sub(lambda m: m.group(1) or m.group(2) or "", section)
    return plain if _ZERO_PATTERN.fullmatch(plain) else None


def _number_text(value: int | float, number_format: str | None) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) or value.is_integer():
        whole = int(value)
        layout = _digit_layout(number_format)
        digits = str(abs(whole))
        width = layout.count("0") if layout else 0
        if layout is None or whole < 0 or len(digits) > width:
            return str(whole)
        digits = digits.zfill(width)
        out, taken = [], 0
        for char in layout:
            if char == "0":
                out.append(digits[taken])
                taken += 1
            else:
                out.append(char)
        return "".join(out)
    return format(Decimal(repr(value)), "f")


def cell_text(value: Any, number_format: str | None = None) -> str:
    """The text a spreadsheet shows for a cell value (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, int | float):
        return _number_text(value, number_format)
    return str(value)


class Sheet:
    """One sheet of a workbook opened read-only: its header and its rows, as text."""

    def __init__(self, name: str, workbook: Any, worksheet: Any) -> None:
        self._name = name
        self._workbook = workbook
        self._worksheet = worksheet
        self.title: str = worksheet.title
        self.header: list[str] = []
        self._header_row = 0
        for number, cells in self._texts():
            if any(cells):
                self.header = cells
                self._header_row = number
                break
        if not self.header:
            raise InputFileError(name, f"sheet {self.title!r} is empty (no header row)", line=1)

    def _texts(self) -> Iterator[tuple[int, list[str]]]:
        number = 0
        try:
            for number, row in enumerate(self._worksheet.iter_rows(), start=1):
                yield number, [cell_text(c.value, getattr(c, "number_format", None)) for c in row]
        except InputFileError:
            raise
        except Exception as exc:
            raise InputFileError(
                self._name, "the workbook cannot be read (truncated or corrupt)", line=number + 1
            ) from exc

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(row number, cell texts) of every row after the header, empty rows included."""
        for number, cells in self._texts():
            if number > self._header_row:
                yield number, cells

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._workbook.close()


@contextlib.contextmanager
def open_sheet(name: str, sheet: str | None) -> Iterator[Sheet]:
    """Open ``sheet`` (default: the first) of the workbook at ``name``, read-only."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(name, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InputFileError(
            name, "not a readable .xlsx workbook (truncated, corrupt or another format)"
        ) from exc
    try:
        names = workbook.sheetnames
        if sheet is None:
            if not names:
                raise InputFileError(name, "the workbook has no sheet")
            worksheet = workbook[names[0]]
        elif sheet in names:
            worksheet = workbook[sheet]
        else:
            raise InputFileError(
                name, f"no sheet {sheet!r}; the workbook has: {', '.join(map(repr, names))}"
            )
        if hasattr(worksheet, "reset_dimensions"):
            worksheet.reset_dimensions()
        opened = Sheet(name, workbook, worksheet)
    except BaseException:
        with contextlib.suppress(Exception):
            workbook.close()
        raise
    try:
        yield opened
    finally:
        opened.close()
