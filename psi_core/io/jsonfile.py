"""Reading the small JSON files of a state directory, with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from psi_core.errors import IntegrityError, PreconditionError

__all__ = ["read_json_object"]

#: State files are small; a larger one is damaged, and is not read into memory whole.
_MAX_BYTES = 1 << 20


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` (``what`` names the file in messages).

    Raises :class:`PreconditionError` when the file is missing or cannot be read (a
    directory, no permission), :class:`IntegrityError` when it is damaged (not UTF-8, not
    JSON, not an object, too large); each message starts with the path.
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        raise PreconditionError(f"{path}: the {what} is missing") from None
    except OSError as exc:
        raise PreconditionError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(raw) > _MAX_BYTES:
        raise IntegrityError(f"{path}: the {what} is damaged: larger than {_MAX_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise IntegrityError(f"{path}: the {what} is damaged: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise IntegrityError(
            f"{path}: the {what} is damaged: not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise IntegrityError(
            f"{path}: the {what} is damaged: it holds a JSON {type(data).__name__}, not an object"
        )
    return data
