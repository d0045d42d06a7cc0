"""Multi-key queries: several recipes per query, and the rule that combines them.

Agency side: :class:`SubjectKeys` computes each subject's key under every recipe of the
query, keeps the distinct keys of each recipe as one *segment* of the request (the points
follow segment by segment), and :meth:`SubjectKeys.hits` turns the indices of the matched
keys back into a subject-by-recipe table (:class:`KeyHits`) that a :class:`MatchRule`
(any, all, at least k) reads.

Custodian side: :class:`KeyDeclaration` is what a request header declares (keys per recipe,
subjects charged); :meth:`KeyDeclaration.check` refuses an inconsistent one before any
charge or curve work, and :meth:`KeyDeclaration.ledger_recipe` names the whole declaration
for the ledger of answered requests, so that a replay must repeat all of it.

Each subject gives at most one key per recipe, so a request of s subjects holds at most s
keys per recipe and r·s in all; the subject is what the authorization is charged for.
Subjects with exactly the same keys (the same person submitted twice) count once.
"""

from __future__ import annotations

import array
import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import numpy as np

from psi_core.errors import InvalidInputError, PeerError

ANY, ALL, AT_LEAST = "any", "all", "at_least"
_RULE_TEXT = re.compile(r"^(any|all|at[-_]least[-_](\d{1,3}))$")
_RULE_ID = re.compile(r"^(any|all|at_least_(\d{1,3}))\(([^()]*)\)$")

#: One boolean per key looked up, True when its fingerprint is in the index.
KeyFlags: TypeAlias = np.ndarray


class KeyRecipe(Protocol):
    """What a recipe must offer here (``psi_core.recipes.MatchKeyRecipe`` does)."""

    @property
    def id(self) -> str: ...

    def key(self, record: Mapping[str, str]) -> str | None: ...


@dataclass(frozen=True)
class MatchRule:
    """Which subjects match: any, all, or at least ``k`` of ``recipes`` (sorted, distinct)."""

    recipes: tuple[str, ...]
    kind: str = ANY
    k: int = 1

    def __post_init__(self) -> None:
        if not self.recipes:
            raise InvalidInputError("a query needs at least one recipe")
        if len(set(self.recipes)) != len(self.recipes):
            raise InvalidInputError("each recipe may be named once per query")
        if tuple(sorted(self.recipes)) != self.recipes:
            raise InvalidInputError("a rule's recipes are kept sorted; use MatchRule.of")
        if self.kind not in (ANY, ALL, AT_LEAST):
            raise InvalidInputError(f"unknown rule {self.kind!r}; use any, all or at-least-K")
        if self.kind == AT_LEAST and not 1 <= self.k <= len(self.recipes):
            raise InvalidInputError(
                f"at-least-{self.k} needs between 1 and {len(self.recipes)} (the number of "
                "recipes) for K"
            )

    @classmethod
    def of(cls, recipes: Iterable[str], rule: str = ANY) -> MatchRule:
        """A rule from recipe ids (any order) and ``any``, ``all`` or ``at-least-K``."""
        ordered = list(recipes)
        if len(set(ordered)) != len(ordered):
            raise InvalidInputError("each recipe may be named once per query")
        found = _RULE_TEXT.match(rule.strip().lower())
        if found is None:
            raise InvalidInputError(f"unknown rule {rule[:32]!r}; use any, all or at-least-K")
        if found.group(2) is None:
            return cls(tuple(sorted(ordered)), found.group(1))
        return cls(tuple(sorted(ordered)), AT_LEAST, int(found.group(2)))

    @classmethod
    def from_id(cls, rule_id: str) -> MatchRule:
        """The rule :attr:`rule_id` names (a recipe id alone is that recipe, rule any)."""
        found = _RULE_ID.match(rule_id)
        if found is None:
            return cls((rule_id,))
        recipes = tuple(found.group(3).split(","))
        if found.group(2) is None:
            return cls(recipes, found.group(1))
        return cls(recipes, AT_LEAST, int(found.group(2)))

    @property
    def required(self) -> int:
        """How many of the recipes must match for the subject to match."""
        if self.kind == ALL:
            return len(self.recipes)
        return self.k if self.kind == AT_LEAST else 1

    @property
    def rule_id(self) -> str:
        """``tin_v1`` for one recipe, else ``any(..)``, ``all(..)`` or ``at_least_K(..)``.

        Equivalent rules share an id: at least 1 is any, at least r is all.
        """
        if len(self.recipes) == 1:
            return self.recipes[0]
        needed = self.required
        name = ANY if needed == 1 else ALL if needed == len(self.recipes) else f"at_least_{needed}"
        return f"{name}({','.join(self.recipes)})"

    @property
    def text(self) -> str:
        """The rule as the command line spells it: any, all or at-least-K."""
        needed = self.required
        if needed == 1:
            return ANY
        return ALL if needed == len(self.recipes) else f"at-least-{needed}"


@dataclass(frozen=True)
class KeyHits:
    """For each subject (row) and recipe (column): whether its key was found in the index."""

    recipes: tuple[str, ...]
    table: np.ndarray

    def matched(self, rule: MatchRule) -> list[int]:
        """Positions of the subjects the rule matches, in submission order."""
        if rule.recipes != self.recipes:
            raise InvalidInputError("the rule names other recipes than the query's keys")
        counts = self.table.sum(axis=1, dtype=np.int64)
        return np.flatnonzero(counts >= rule.required).tolist()

    def recipes_of(self, subject: int) -> tuple[str, ...]:
        """The recipes whose key matched for the subject at ``subject``."""
        return tuple(r for r, hit in zip(self.recipes, self.table[subject], strict=True) if hit)


class SubjectKeys:
    """Every subject's key under each recipe, and the request's distinct keys per recipe."""

    def __init__(self, recipes: Sequence[str], segments: list[list[str]], key_index: np.ndarray):
        self.recipes = tuple(recipes)
        self.segments = segments
        #: (subjects, recipes): index of the subject's key within its segment, -1 for none.
        self.key_index = key_index

    @classmethod
    def build(
        cls, recipes: Sequence[KeyRecipe], subjects: Iterable[Mapping[str, str]]
    ) -> SubjectKeys:
        positions: list[dict[str, int]] = [{} for _ in recipes]
        flat = array.array("q")  # 8 bytes per subject and recipe, however many subjects
        for subject in subjects:
            for recipe, seen in zip(recipes, positions, strict=True):
                key = recipe.key(subject)
                flat.append(-1 if key is None else seen.setdefault(key, len(seen)))
        key_index = np.frombuffer(flat, dtype=np.int64).reshape(-1, len(recipes))
        return cls([r.id for r in recipes], [list(seen) for seen in positions], key_index)

    @functools.cached_property
    def keys(self) -> list[str]:
        """The request's keys in the order the points are sent: segment after segment."""
        return [key for segment in self.segments for key in segment]

    @functools.cached_property
    def segment_counts(self) -> tuple[int, ...]:
        return tuple(len(segment) for segment in self.segments)

    @functools.cached_property
    def keyed_subjects(self) -> int:
        """Subjects with a key under at least one recipe."""
        return int(np.count_nonzero((self.key_index >= 0).any(axis=1)))

    @functools.cached_property
    def charged_subjects(self) -> int:
        """Keyed subjects, those with exactly the same keys counted once: what is charged."""
        keyed = self.key_index[(self.key_index >= 0).any(axis=1)]
        return len(np.unique(keyed, axis=0)) if len(keyed) else 0

    def in_secret_order(self, secret: bytes) -> SubjectKeys:
        """The same keys, each segment sorted by HMAC-SHA256 under ``secret`` (the query's
        blinding scalar, so a replay sends the very same order).

        Otherwise the n-th point of every segment would tend to come from the same subject,
        and the custodian could line up a subject's keys across recipes, which tells it how
        the agency's list is filled in. In secret order the positions are independent.
        """
        order_key = hashlib.sha256(b"psi-multikey-order|" + secret).digest()
        segments, columns = [], []
        for column, segment in enumerate(self.segments):
            rank = sorted(
                range(len(segment)),
                key=lambda i, seg=segment: hmac.digest(order_key, seg[i].encode(), "sha256"),
            )
            new_position = np.empty(len(segment) + 1, dtype=np.int64)
            new_position[rank] = np.arange(len(segment), dtype=np.int64)
            new_position[-1] = -1
            segments.append([segment[i] for i in rank])
            columns.append(new_position[self.key_index[:, column]])
        key_index = np.stack(columns, axis=1) if columns else self.key_index
        return SubjectKeys(self.recipes, segments, key_index.reshape(self.key_index.shape))

    def declaration(self) -> KeyDeclaration:
        """What the request header declares (recipes that gave no key are left out)."""
        return KeyDeclaration(
            tuple((r, n) for r, n in zip(self.recipes, self.segment_counts, strict=True) if n),
            self.charged_subjects,
        )

    def hits(self, found: Sequence[KeyFlags]) -> KeyHits:
        """The subject-by-recipe table from the index lookups of :attr:`keys`, in point
        order (one boolean array per answered chunk, as ``EncryptedIndex.contains`` gives)."""
        flags = np.concatenate([np.asarray(f, dtype=bool) for f in found] or [np.zeros(0, bool)])
        if len(flags) != sum(self.segment_counts):
            raise PeerError(
                f"{len(flags)} answers for {sum(self.segment_counts)} keys; the query is void"
            )
        table = np.zeros(self.key_index.shape, dtype=bool)
        start = 0
        for column, count in enumerate(self.segment_counts):
            segment = np.append(flags[start : start + count], False)
            table[:, column] = segment[self.key_index[:, column]]
            start += count
        return KeyHits(self.recipes, table)


def count_found(found: Sequence[KeyFlags]) -> int:
    """How many lookups found their fingerprint (the result of a cardinality query)."""
    return sum(int(np.count_nonzero(f)) for f in found)


@dataclass(frozen=True)
class KeyDeclaration:
    """What an Evaluate header declares: (recipe, keys) in point order, subjects charged."""

    segments: tuple[tuple[str, int], ...]
    subjects: int

    @property
    def point_count(self) -> int:
        return sum(count for _, count in self.segments)

    @property
    def recipes(self) -> tuple[str, ...]:
        return tuple(recipe for recipe, _ in self.segments)

    @property
    def is_single(self) -> bool:
        """One recipe, one key per subject: the same request as a single-recipe header."""
        return len(self.segments) == 1 and self.subjects == self.point_count

    def check(self, *, point_count: int, mode: str) -> None:
        """Refuse a declaration that cannot describe a real request (InvalidInputError)."""
        if not self.segments:
            raise InvalidInputError("the header names no recipe")
        if len(set(self.recipes)) != len(self.recipes):
            raise InvalidInputError("recipe_keys names a recipe more than once")
        if any(count < 1 for _, count in self.segments):
            raise InvalidInputError("every recipe in recipe_keys needs a key_count of at least 1")
        if self.point_count != point_count:
            raise InvalidInputError(
                f"recipe_keys add up to {self.point_count} points but point_count is {point_count}"
            )
        most = max(count for _, count in self.segments)
        if self.subjects < most:
            raise InvalidInputError(
                f"subject_count {self.subjects} is below the {most} keys of one recipe; each "
                "subject gives at most one key per recipe"
            )
        if mode != "membership" and len(self.segments) > 1:
            raise InvalidInputError(
                "cardinality mode takes one recipe: its sorted answer cannot tie a subject's "
                "keys together, so a rule over several recipes cannot be applied"
            )

    def ledger_recipe(self) -> str:
        """The whole declaration as one text, for the ledger of answered requests.

        A single-recipe declaration is its recipe id, so the same request sent with either
        form of header is the same request.
        """
        if self.is_single:
            return self.segments[0][0]
        counts = ",".join(f"{recipe}={count}" for recipe, count in self.segments)
        return f"{counts};subjects={self.subjects}"
