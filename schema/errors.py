"""The one place failures become GraphQL errors: a code for each kind, unexpected ones masked."""

from __future__ import annotations

import logging
import re

from graphql import GraphQLError

from auth.errors import LinkgateError

logger = logging.getLogger("linkgate.errors")

# graphql-core's suggestions: "Did you mean 'first'?", "Did you mean the enum value 'X' or 'Y'?"
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")

INTERNAL_MESSAGE = "Internal server error. Quote the request id when reporting it."


def shape_error(error: GraphQLError, request_id: str) -> GraphQLError:
    """Gives ``error`` its code and hides the insides of unexpected ones, in place.

    In place because Strawberry hands every error of every path (parsing, validation,
    extension hooks, execution) to ``Schema.process_errors`` exactly there.
    """
    if getattr(error, "_linkgate_shaped", False):
        return error
    original = error.original_error
    if isinstance(original, LinkgateError):
        error.extensions = {"code": original.code, **original.extensions}
        error.message = original.message
    elif original is None or (
        error.path is None and isinstance(original, (GraphQLError, ValueError, TypeError))
    ):
        # Syntax, validation and variable-coercion errors (an Int over 2^31 - 1, a malformed
        # DateTime: graphql-core keeps the scalar's exception): the request itself is wrong.
        error.extensions = {"code": "BAD_USER_INPUT", **(error.extensions or {})}
    else:
        logger.error(
            "unexpected error in request %s at %s", request_id, error.path,
            exc_info=(type(original), original, original.__traceback__),
        )
        error.extensions = {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
        error.message = INTERNAL_MESSAGE
    error._linkgate_shaped = True  # type: ignore[attr-defined]
    return error


def without_suggestions(message: str) -> str:
    """``message`` without graphql-core's "Did you mean ...?" hints (names hold no '?')."""
    return _SUGGESTION.sub("", message)
