"""What both parties share: recipes, the DH-PSI protocol, the encrypted index, security
primitives and file handling. Nothing here imports gRPC.

The names below are the stable public surface; submodules hold the details.
"""

from __future__ import annotations

from psi_core.errors import (
    AuthenticationError,
    BudgetExhaustedError,
    IntegrityError,
    InvalidInputError,
    MalformedMessageError,
    NotFoundError,
    PeerError,
    PermissionDeniedError,
    PreconditionError,
    PsiError,
    RowError,
    UnknownRecipeError,
)
from psi_core.index import EncryptedIndex, IndexManifest
from psi_core.protocol import (
    BlindedQuery,
    FalsePositiveBound,
    Reencryptor,
    RequestDigest,
    distinct_keys,
)
from psi_core.recipes import RECIPES, MatchKeyRecipe, get_recipe, recipe_ids

__version__ = "0.1.0"

__all__ = [
    "RECIPES",
    "AuthenticationError",
    "BlindedQuery",
    "BudgetExhaustedError",
    "EncryptedIndex",
    "FalsePositiveBound",
    "IndexManifest",
    "IntegrityError",
    "InvalidInputError",
    "MalformedMessageError",
    "MatchKeyRecipe",
    "NotFoundError",
    "PeerError",
    "PermissionDeniedError",
    "PreconditionError",
    "PsiError",
    "Reencryptor",
    "RequestDigest",
    "RowError",
    "UnknownRecipeError",
    "distinct_keys",
    "get_recipe",
    "recipe_ids",
]
