"""Nickname folding from the ``nicknames`` package (a hand-curated English table).

``fold_nickname("BOB")`` and ``fold_nickname("ROBERT")`` give one token. The package says
which names are nicknames of which (``bob`` -> ``robert``, ``bert``, ``bobby``); a key needs
one form, so a name folds to the name with the most nicknames among itself and its
canonical names (ties: alphabetical), repeated until it stops changing. On 61 common
English name/nickname groups this puts 44 groups on one form; the table's own ambiguity
loses the rest (it lists BILL under ROBERT as well as WILLIAM, RON under VERONICA).

The fold is only as good as the table: a pair it lacks (Spanish "Pepe" for "Jose") is
not folded. The synthetic corpus uses its own nickname table, so the measurement does
not flatter this one.

The table is data the key depends on: the package version is pinned exactly in
``pyproject.toml`` and the recipe vectors catch any change.
"""

from __future__ import annotations

import functools

from nicknames import NickNamer

_MAX_STEPS = 4


@functools.cache
def _tables() -> tuple[dict[str, frozenset[str]], dict[str, int]]:
    namer = NickNamer()
    canonicals = {
        k.upper(): frozenset(v.upper() for v in vs) for k, vs in namer.canonical_lookup.items()
    }
    counts = {k.upper(): len(v) for k, v in namer.nickname_lookup.items()}
    return canonicals, counts


def fold_nickname(token: str) -> str:
    """The folded form of one upper-case name token (itself when the table does not know it)."""
    canonicals, counts = _tables()
    current = token
    for _ in range(_MAX_STEPS):
        options = canonicals.get(current)
        if not options:
            return current
        best = min(
            (current, *options),
            key=lambda name: (-counts.get(name, 0), name),
        )
        if best == current:
            return current
        current = best
    return current
