"""Match-key recipes: how a record becomes the key strings both parties hash.

A recipe (``MatchKeyRecipe``) is identified by a versioned id such as ``name_address_v1``;
``recipe.key(record)`` gives ``"<id>|<field>|..."`` or None when the record lacks what the
recipe needs, and ``recipe.why_no_key(record)`` then says why (a code of
``NO_KEY_REASONS``, such as ``no_zip`` or ``tin_not_nine_digits``). Both parties must run
the same code: the custodian builds its index with it and the agency its queries, so a
recipe's output never changes under the same id.

========================  ==========================================================
recipe                    key string
========================  ==========================================================
``name_address_v1``       ``name_address_v1|<NAME>|<STREET>|<STATE>|<ZIP5>``
``name_dob_v1``           ``name_dob_v1|<NAME>|<YYYY-MM-DD>``
``tin_v1``                ``tin_v1|<9 digits>``
``name_address_v2``       ``name_address_v2|<TOLERANT NAME>|<STREET>|<STATE>|<ZIP5>``
``name_dob_v2``           ``name_dob_v2|<TOLERANT NAME>|<YYYY-A-B>``
``name_house_v1``         ``name_house_v1|<TOLERANT NAME>|<HOUSE NUMBER>|<ZIP5>``
``house_dob_v1``          ``house_dob_v1|<HOUSE NUMBER>|<ZIP5>|<YYYY-A-B>``
``sound_dob_v1``          ``sound_dob_v1|<SOUNDEX> <SOUNDEX>|<YYYY-A-B>``
``tin_v2``                ``tin_v2|<9 digits>`` (leading zeros restored)
``tin_initials_v1``       ``tin_initials_v1|<9 digits>|<2 initials>``
========================  ==========================================================

``DEFAULT_RECIPE_IDS`` (the three ``_v1`` recipes) is what an index holds when no recipe is
named. The second-generation forms (``<TOLERANT NAME>``, ``<YYYY-A-B>``) are described in
:mod:`psi_core.recipes._tolerant`; ``quality.json`` beside this file holds the measured
false-match rate of each recipe and multi-key rule (:mod:`psi_core.recipes.quality`).

``<NAME>`` is every token of given and family name, folded (accents and punctuation
removed, upper case) and sorted, joined by single spaces: "José García-López", "GARCIA
LOPEZ, JOSE" and "Jose Garcia" / "Lopez" all give ``GARCIA JOSE LOPEZ``. Generational
suffixes and middle initials are kept (fewer false matches, at the cost of missing a
subject written without them). Sorting is what lets swapped or differently split name
fields agree; its price is that "Mary Ann Smith" and "Ann Mary Smith" share a key.
Hyphens split tokens ("Smith-Jones" = "Smith Jones"); a compound written solid
("SmithJones") stays one token, since it cannot be split without a dictionary.
``<STREET>`` is a USPS Publication 28 style line (``123 N MAIN ST # 4``); the city is not
used (see ``name_address_v1``). No field can contain ``|``.
"""

from __future__ import annotations

from ._reasons import NO_KEY_REASONS
from ._recipes import (
    DEFAULT_RECIPE_IDS,
    RECIPES,
    MatchKeyRecipe,
    Record,
    forget_cached_forms,
    get_recipe,
    recipe_ids,
)
from .quality import QualityEstimate, expected_false_matches, rule_id

__all__ = [
    "DEFAULT_RECIPE_IDS",
    "NO_KEY_REASONS",
    "RECIPES",
    "MatchKeyRecipe",
    "QualityEstimate",
    "Record",
    "expected_false_matches",
    "forget_cached_forms",
    "get_recipe",
    "recipe_ids",
    "rule_id",
]
