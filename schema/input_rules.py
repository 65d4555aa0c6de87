"""What a document and the request naming its operation may hold, beyond the GraphQL specification."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    ArgumentNode, GraphQLError, ObjectFieldNode, OperationDefinitionNode, StringValueNode,
    VariableDefinitionNode,
)
from graphql.validation import ValidationRule
from strawberry.extensions import SchemaExtension

from auth.errors import BadInput
from resolvers.validation import untypable_character


class UntypableStringLiterals(ValidationRule):
    """A string literal may not hold a NUL: GraphQL's ``\\u0000`` escape writes one, though
    no text may hold it (``linkgate.request_body`` refuses it in variables; the lexer refuses
    lone surrogates already). Reported with the argument or input field it was given to."""

    def enter_string_value(
        self, node: StringValueNode, _key: Any, parent: Any, _path: Any, ancestors: list[Any]
    ) -> None:
        problem = untypable_character(node.value)
        if problem is None:
            return
        where = next(
            (
                f"`{ancestor.name.value}`" if not isinstance(ancestor, VariableDefinitionNode)
                else f"the default of `${ancestor.variable.name.value}`"
                for ancestor in reversed([*ancestors, parent])
                if isinstance(ancestor, (ArgumentNode, ObjectFieldNode, VariableDefinitionNode))
            ),
            "a string",
        )
        self.report_error(
            GraphQLError(f"The value given to {where} holds {problem}, which no text may hold.", node)
        )


class OperationChoice(SchemaExtension):
    """A document with several operations needs ``operationName``: Strawberry would run the
    first one, which the client may not have meant (graphql-core refuses; so does this)."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context._provided_operation_name is None:  # noqa: SLF001
            operations = [node for node in document.definitions if isinstance(node, OperationDefinitionNode)]
            count = len(operations)
            # An anonymous one among several is invalid anyway: validation says so.
            if count > 1 and all(operation.name for operation in operations):
                raise BadInput(
                    f"The document holds {count} operations: name the one to run in `operationName`.",
                    field="operationName",
                )
        yield
