"""The one place failures become GraphQL errors: a code for each kind, unexpected ones masked."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from auth.errors import LinkgateError

logger = logging.getLogger("linkgate.errors")

INTERNAL_MESSAGE = "Internal server error. Quote the request id when reporting it."


def shape_error(error: GraphQLError, request_id: str) -> GraphQLError:
    original = error.original_error
    if isinstance(original, LinkgateError):
        extensions: dict[str, Any] = {"code": original.code, **original.extensions}
        message = original.message
    elif original is None or (
        error.path is None and isinstance(original, (GraphQLError, ValueError, TypeError))
    ):
        # Syntax, validation and variable-coercion errors (an Int over 2^31 - 1, a malformed
        # DateTime: graphql-core keeps the scalar's exception): the request itself is wrong.
        extensions = {"code": "BAD_USER_INPUT", **(error.extensions or {})}
        message = error.message
    else:
        logger.error(
            "unexpected error in request %s at %s", request_id, error.path,
            exc_info=(type(original), original, original.__traceback__),
        )
        extensions = {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
        message = INTERNAL_MESSAGE
    return GraphQLError(
        message, nodes=error.nodes, source=error.source, positions=error.positions,
        path=error.path, extensions=extensions,
    )


class ShapeErrors(SchemaExtension):
    """Gives every error a code and hides the insides of unexpected ones."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if errors:
            request_id = getattr(self.execution_context.context, "request_id", "-")
            result.errors = [shape_error(error, request_id) for error in errors]  # type: ignore[union-attr]
