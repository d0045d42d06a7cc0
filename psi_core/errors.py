"""The project's exception tree.

Every failure that crosses a module boundary is one of these. Each class names the
status a transport should report (``status``, a gRPC status-code *name*, kept as a
string so that ``psi_core`` never imports gRPC). Messages are written for a person who
must act on them, and never echo a subject, a key string or a curve point.

::

    PsiError
    ├── InvalidInputError          INVALID_ARGUMENT
    │   ├── UnknownRecipeError
    │   ├── MalformedMessageError
    │   └── InputFileError         (a file given to a command that cannot be read as given)
    │       └── RowError           (one row of it; carries its line)
    ├── AuthenticationError        UNAUTHENTICATED
    ├── PermissionDeniedError      PERMISSION_DENIED
    ├── BudgetExhaustedError       RESOURCE_EXHAUSTED
    ├── PreconditionError          FAILED_PRECONDITION
    ├── NotFoundError              NOT_FOUND
    ├── IntegrityError             DATA_LOSS
    └── PeerError                  UNAVAILABLE (a peer that is down or answers nonsense)
        └── UnreachableError       (down or too slow: trying again later may succeed)
"""

from __future__ import annotations


class PsiError(Exception):
    """Base of every error this project raises on purpose."""

    status = "INTERNAL"


class InvalidInputError(PsiError):
    """Input that can never succeed as given: a malformed file, field or message."""

    status = "INVALID_ARGUMENT"


class UnknownRecipeError(InvalidInputError):
    """A match-key recipe id that this build does not implement (or the peer does not hold)."""


class MalformedMessageError(InvalidInputError):
    """Bytes from the wire that fail validation before they reach a cryptographic library."""


class InputFileError(InvalidInputError):
    """An input file (records, subjects, a population) that cannot be read as given.

    The message reads ``PATH: line N, column 'C': reason`` (line and column when known),
    so a person can open the file at that place; the command-line tools print it as an
    input file error with exit status 65 (``EX_DATAERR``). ``line`` is the 1-based
    physical line of a CSV file, the row number of a spreadsheet, or a Parquet row index
    plus 2 (as if it had a header line); ``column`` is the file's own header.
    """

    def __init__(
        self, path: str, reason: str, *, line: int | None = None, column: str | None = None
    ) -> None:
        where = path
        if line is not None:
            where += f": line {line}"
        if column is not None:
            where += f"{',' if line is not None else ':'} column {column!r}"
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.column = column
        self.reason = reason


class RowError(InputFileError):
    """A row of an input file that cannot be read; ``line`` is always set."""

    line: int

    def __init__(self, path: str, line: int, reason: str, column: str | None = None) -> None:
        super().__init__(path, reason, line=line, column=column)


class AuthenticationError(PsiError):
    """The caller's identity or authorization could not be verified."""

    status = "UNAUTHENTICATED"


class PermissionDeniedError(PsiError):
    """The caller is known but not allowed to do this."""

    status = "PERMISSION_DENIED"


class BudgetExhaustedError(PsiError):
    """A quota, budget or size cap would be exceeded."""

    status = "RESOURCE_EXHAUSTED"


class PreconditionError(PsiError):
    """The system is not in a state where this can run (no index, wrong epoch, too large)."""

    status = "FAILED_PRECONDITION"


class NotFoundError(PsiError):
    """A named thing (query, epoch, file) does not exist."""

    status = "NOT_FOUND"


class IntegrityError(PsiError):
    """Stored or transferred data does not match its digest or chain."""

    status = "DATA_LOSS"


class PeerError(PsiError):
    """The other service is unreachable or answered something that cannot be right."""

    status = "UNAVAILABLE"


class UnreachableError(PeerError):
    """The peer could not be reached or did not answer in time (gRPC UNAVAILABLE or
    DEADLINE_EXCEEDED): unlike an answer that cannot be right, trying again may succeed."""


def shown(value: object, limit: int = 64, *, quoted: bool = True) -> str:
    """A value from an untrusted source (a peer, a file), safe to put in a message or a log.

    At most ``limit`` characters of it are kept. Quoted (the default, for messages): as a
    Python literal with every non-ASCII or control character escaped, "…" after a cut and
    "(none)" for nothing. Unquoted (for ids recorded in a log): the bare text with anything
    but printable ASCII replaced by "?".
    """
    text = value if isinstance(value, str) else repr(value)
    if not quoted:
        return "".join(ch if " " <= ch <= "~" else "?" for ch in text[:limit])
    if not text:
        return "(none)"
    if len(text) > limit:
        text = text[:limit] + "…"
    return ascii(text)
