"""The query cost estimate: how many objects an operation could ask for, before it runs.

Each field costs 1. A list field multiplies what its selection costs by the number of items
it can return: its ``first`` argument (the default page size when absent) for connections,
``len(ids)`` for ``nodes``, and ``ASSUMED_LIST_SIZE`` for plain lists such as ``services``.
Fragments count where they are spread. The estimate is an upper bound in the shape of the
query, so a dashboard costs the same whatever the tables hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode, FieldNode, FragmentDefinitionNode, FragmentSpreadNode, GraphQLInterfaceType,
    GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLSchema, GraphQLUnionType,
    InlineFragmentNode, OperationDefinitionNode, SelectionSetNode, value_from_ast_untyped,
)
from strawberry.extensions import SchemaExtension

from auth.errors import BadInput

ASSUMED_LIST_SIZE = 10
DEFAULT_PAGE_SIZE = 20


def _unwrap(graphql_type: Any) -> tuple[Any, bool]:
    """(the named type, whether a list is on the way)."""
    is_list = False
    while isinstance(graphql_type, (GraphQLNonNull, GraphQLList)):
        is_list = is_list or isinstance(graphql_type, GraphQLList)
        graphql_type = graphql_type.of_type
    return graphql_type, is_list


class _CostWalker:
    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, variables: Mapping[str, Any]
    ) -> None:
        self.schema = schema
        self.variables = variables
        self.spread_costs: dict[tuple[str, str | None], int] = {}
        self.fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }

    def selection_set(self, parent: Any, selection_set: SelectionSetNode | None, seen: frozenset[str]) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(parent, selection, seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selection_set(target or parent, selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue  # validation reports unknown and cyclic fragments
                target = self.schema.get_type(fragment.type_condition.name.value) or parent
                key = (name, getattr(target, "name", None))
                if key not in self.spread_costs:  # once per fragment: a chain of fragments
                    # each spreading the next twice would otherwise cost 2^n walks
                    self.spread_costs[key] = self.selection_set(target, fragment.selection_set, seen | {name})
                total += self.spread_costs[key]
        return total

    def field(self, parent: Any, node: FieldNode, seen: frozenset[str]) -> int:
        if not isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
            return 1
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return 1  # introspection and typename fields
        named, is_list = _unwrap(definition.type)
        arguments = self._arguments(node)
        multiplier = 1
        if is_list and parent.name.endswith("Connection"):
            multiplier = 1  # a connection's edges: its ``first`` has counted them already
        elif is_list:
            ids = arguments.get("ids")
            multiplier = len(ids) if isinstance(ids, list) else ASSUMED_LIST_SIZE
        elif "first" in definition.args:
            first = arguments.get("first")
            multiplier = first if isinstance(first, int) and first > 0 else DEFAULT_PAGE_SIZE
        if isinstance(named, GraphQLUnionType):
            named = None
        return 1 + multiplier * self.selection_set(named, node.selection_set, seen)

    def _arguments(self, node: FieldNode) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for argument in node.arguments or ():
            try:
                values[argument.name.value] = value_from_ast_untyped(argument.value, self.variables)
            except Exception:  # noqa: BLE001 - a malformed argument is validation's to report
                continue
        return values


def estimate_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    walker = _CostWalker(schema, document, variables or {})
    total = 0
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if operation_name is not None and (definition.name is None or definition.name.value != operation_name):
            continue
        root = schema.get_root_type(definition.operation)
        total = max(total, walker.selection_set(root, definition.selection_set, frozenset()))
    return total


class CostLimit(SchemaExtension):
    """Refuses an operation whose estimate is over ``max_cost``, before anything runs."""

    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:
            cost = estimate_cost(
                context.schema._schema, context.graphql_document,
                context.operation_name, context.variables,
            )
            if cost > self.max_cost:
                raise BadInput(
                    f"The operation could return about {cost} objects; the limit is "
                    f"{self.max_cost}. Ask for smaller pages (`first`) or fewer fields.",
                    limit="cost", cost=cost, maxCost=self.max_cost,
                )
        yield
