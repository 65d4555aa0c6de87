"""The root Mutation, merged from one ``…Mutations`` class per domain module.

To add a mutation: write the resolver in ``resolvers/<domain>.py``, a one-line field in the
domain's ``…Mutations`` class in ``schema/<domain>.py``, and list that class here once.
"""

from __future__ import annotations

from strawberry.tools import merge_types

from schema.sign_in import SignInMutations

Mutation = merge_types("Mutation", (SignInMutations,))
