"""A bounded parse cache that leaves syntax errors to Strawberry's own reporting."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import ParserCache


class CachedParsing(ParserCache):
    """``ParserCache`` raises a syntax error from inside its hook, where it skips the
    error shaping every other error gets; here an unparsable document falls through to
    Strawberry's parse, which reports it the usual way (so it gets its code)."""

    def on_parse(self) -> Iterator[None]:
        try:
            yield from super().on_parse()
        except GraphQLError:
            yield
