"""Taxpayer identification numbers that are unique by construction.

A row's number is a keyed pseudo-random permutation of its row index (a 4-round Feistel
network with cycle walking), mapped onto the valid numbers of its kind:

* SSN: area 001-899 except 666, group 01-99, serial 0001-9999.
* ITIN: area 900-999, group 70-88, serial 0001-9999.

Distinct indices below a kind's size (``SSN_SPACE``, ``ITIN_SPACE``) therefore never share a
number; ITIN indices wrap modulo ``ITIN_SPACE`` (about 1.9e7).
"""

from __future__ import annotations

from typing import Final

import numpy as np

_SSN_AREAS: Final = np.array([a for a in range(1, 900) if a != 666], dtype=np.int64)
_ITIN_AREAS: Final = np.arange(900, 1000, dtype=np.int64)
_ITIN_GROUPS: Final = np.arange(70, 89, dtype=np.int64)
_SERIALS: Final = 9999

SSN_SPACE: Final = len(_SSN_AREAS) * 99 * _SERIALS
ITIN_SPACE: Final = len(_ITIN_AREAS) * len(_ITIN_GROUPS) * _SERIALS

_ROUNDS: Final = 4
_MULTIPLIER: Final = np.uint64(0x9E3779B97F4A7C15)


class TinPermutation:
    """A keyed permutation of ``[0, size)`` (vectorized over numpy arrays)."""

    def __init__(self, size: int, keys: np.ndarray) -> None:
        if size < 2:
            raise ValueError("size must be at least 2")
        bits = max(2, (int(size - 1).bit_length() + 1) // 2)
        self._size = size
        self._half = np.uint64(bits)
        self._mask = np.uint64((1 << bits) - 1)
        self._keys = np.asarray(keys, dtype=np.uint64)[:_ROUNDS]
        if len(self._keys) != _ROUNDS:
            raise ValueError(f"need {_ROUNDS} round keys")

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Permute each value of ``values`` (all in ``[0, size)``)."""
        out = self._feistel(np.asarray(values, dtype=np.uint64))
        outside = out >= self._size
        while outside.any():
            out[outside] = self._feistel(out[outside])
            outside = out >= self._size
        return out.astype(np.int64)

    def _feistel(self, values: np.ndarray) -> np.ndarray:
        left = values >> self._half
        right = values & self._mask
        for key in self._keys:
            mixed = ((right ^ key) * _MULTIPLIER) >> np.uint64(29)
            left, right = right, (left ^ mixed) & self._mask
        return (left << self._half) | right


def tin_keys(rng: np.random.Generator) -> np.ndarray:
    """Draw the round keys of one permutation."""
    return rng.integers(0, 2**63, size=_ROUNDS, dtype=np.uint64)


def ssn_parts(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area, group and serial of SSN numbers in ``[0, SSN_SPACE)``."""
    area, rest = np.divmod(numbers, 99 * _SERIALS)
    group, serial = np.divmod(rest, _SERIALS)
    return _SSN_AREAS[area], group + 1, serial + 1


def itin_parts(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area, group and serial of ITIN numbers in ``[0, ITIN_SPACE)``."""
    area, rest = np.divmod(numbers, len(_ITIN_GROUPS) * _SERIALS)
    group, serial = np.divmod(rest, _SERIALS)
    return _ITIN_AREAS[area], _ITIN_GROUPS[group], serial + 1
