"""Streaming record files (CSV, .xlsx, Parquet) and whole-file atomic writes."""

from __future__ import annotations

from psi_core.io.atomic import (
    fsync_directory,
    utc_timestamp,
    write_file_atomically,
)
from psi_core.io.jsonfile import read_json_object
from psi_core.io.tabular import (
    DEFAULT_BATCH_ROWS,
    RECORD_COLUMNS,
    SUBJECT_COLUMNS,
    TRUTH_COLUMNS,
    ColumnPlan,
    InputFile,
    InputOptions,
    OnError,
    RowWriter,
    count_rows,
    estimate_rows,
    file_format,
    read_rows,
)

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
    "estimate_rows",
    "file_format",
    "fsync_directory",
    "read_json_object",
    "read_rows",
    "utc_timestamp",
    "write_file_atomically",
]
