"""Change notification for query progress, so watchers wake on change instead of polling."""

from __future__ import annotations

import threading


class ProgressBoard:
    """A version counter per query; ``wait`` returns when it moves past what the caller saw."""

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._changed = threading.Condition()

    def version(self, query_id: str) -> int:
        with self._changed:
            return self._versions.get(query_id, 0)

    def bump(self, query_id: str) -> None:
        with self._changed:
            self._versions[query_id] = self._versions.get(query_id, 0) + 1
            self._changed.notify_all()

    def wait(self, query_id: str, seen: int, timeout: float) -> int:
        """Block until the version differs from ``seen`` or ``timeout`` passes; return it."""
        with self._changed:
            self._changed.wait_for(lambda: self._versions.get(query_id, 0) != seen, timeout)
            return self._versions.get(query_id, 0)
