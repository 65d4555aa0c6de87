"""The executor: graphql-core's, planned once per selection set instead of once per field.

A dashboard answer holds about 25,000 fields over 7,400 objects. graphql-core works out for
every field, on every object, what it already knew for the previous object of the same
selection set: the field definition, the list of AST nodes, whether the result type is
non-null, a list, a leaf or an object — and it builds an ``Info`` and runs Strawberry's
resolver wrapper even for fields that only read an attribute. This executor classifies each
field of a selection set once per operation (a ``_Step``) and then, per object:

- a *plain* field (no resolver, no field extension — so no ``@requires`` guard — selected
  without arguments or directives) reads its attribute; a scalar or enum is coerced inline;
- a resolver taking at most ``self`` and ``info`` is called directly, after the field's
  ``@requires`` check if it has one (``RequiresPermission.check``, the same rule);
- every other field calls its resolver exactly as graphql-core does (``Info``, arguments,
  Strawberry's wrapper with its field extensions, the same error handling);
- values complete with the same rules as graphql-core's ``complete_value`` for non-null,
  lists held in memory, leaves and object types; interfaces, unions, async iterables and
  anything unusual go to graphql-core's own code.

A null in a non-null field, a value a scalar refuses or a resolver's exception is reported by
the same ``handle_field_error`` as before, so errors, their paths and null propagation are
unchanged. An operation whose schema extensions wrap resolvers (a ``resolve`` hook) runs
entirely on graphql-core's path, so such an extension still sees every field.

Measured in ``bench/RESULTS.md``; pinned by ``tests/test_execution.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from graphql import (
    GRAPHQL_MAX_INT,
    GRAPHQL_MIN_INT,
    FieldNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLString,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.execution.executor import invalid_return_type_error, to_nodes
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

from schema.directives import RequiresPermission

# What a step does with the object in front of it.
_LEAF = 1  # read a plain attribute holding a scalar or an enum, coerce it inline
_VALUE = 2  # read a plain attribute holding an object or a list, complete it
_CALL = 3  # call a resolver that takes at most ``self`` and ``info`` directly
_RESOLVE = 4  # call the field's resolver through Strawberry's wrapper, complete the result
_CORE = 5  # a field selected with directives: graphql-core's ``execute_field`` as it is
_UNKNOWN = 6  # no such field on the type (graphql-core leaves it out of the answer)

_UNPLANNED: Any = object()

# A planned selection set: per field (kind, response name, attribute, coerce, nullable,
# passthrough, step).
Plan = list[tuple[int, str, str, "Callable[[Any], Any] | None", bool, "type | None", "_Step"]]

# Built-in scalars whose coercion returns a value of exactly this type as it is.
_PASSTHROUGH: dict[GraphQLLeafType, type] = {GraphQLString: str, GraphQLID: str, GraphQLBoolean: bool}

# Completes a field's value at a path, given the field's ``Info`` if one was built.
Completer = Callable[[Any, Path, "GraphQLResolveInfo | None"], Any]

# What completed values are made of: never awaitable, so no need to ask.
_SETTLED = frozenset({dict, list, str, int, float, bool, type(None)})


class _Step:
    """One field of one selection set, worked out once per operation."""

    __slots__ = ("response_name", "details", "nodes", "field_def", "parent_type", "kind",
                 "attribute", "return_type", "nullable", "coerce", "resolve", "has_arguments",
                 "subplans", "completer", "definition", "call", "passes_self", "info_parameter",
                 "passthrough", "guard")

    def __init__(self, response_name: str, details: FieldDetailsList,
                 field_def: GraphQLField | None, parent_type: GraphQLObjectType, *,
                 default_resolver: Callable[..., Any], direct_calls: bool) -> None:
        self.response_name = response_name
        self.details = details
        self.nodes: list[FieldNode] = to_nodes(details)
        self.field_def = field_def
        self.parent_type = parent_type
        # The plan of this field's selection set, per object type it returned (``_subplan``).
        self.subplans: dict[GraphQLObjectType, Plan | None] = {}
        self.completer: Completer | None = None
        self.attribute = ""
        self.coerce: Callable[[Any], Any] | None = None
        self.passthrough: type | None = None
        if field_def is None:
            self.kind = _UNKNOWN
            return
        self.return_type: GraphQLOutputType = field_def.type
        self.nullable = not isinstance(field_def.type, GraphQLNonNull)
        self.resolve = field_def.resolve or default_resolver
        self.has_arguments = bool(field_def.args or details[0].node.arguments)
        definition = field_def.extensions.get("strawberry-definition")
        self.definition: StrawberryField | None = (
            definition if isinstance(definition, StrawberryField) else None
        )
        if any(detail.defer_usage is not None or detail.node.directives for detail in details):
            self.kind = _CORE  # @include, @skip, @stream…: graphql-core's own path
        elif _is_plain(self.definition, field_def) and not self.has_arguments:
            self.attribute = self.definition.python_name  # type: ignore[union-attr]
            named = self.return_type.of_type if not self.nullable else self.return_type  # type: ignore[attr-defined]
            if isinstance(named, GraphQLLeafType):
                self.kind = _LEAF
                self.coerce = _coercer(named)
                self.passthrough = _PASSTHROUGH.get(named)
            else:
                self.kind = _VALUE
        elif direct_calls and _is_simple_resolver(self.definition, field_def) and not self.has_arguments:
            resolver = self.definition.base_resolver  # type: ignore[union-attr]
            self.kind = _CALL
            self.guard: RequiresPermission | None = (
                self.definition.extensions[0] if self.definition.extensions else None  # type: ignore[union-attr,assignment]
            )
            self.call = resolver.wrapped_func
            self.passes_self = resolver.self_parameter is not None
            self.info_parameter = resolver.info_parameter.name if resolver.info_parameter else None
        else:
            self.kind = _RESOLVE


def _coercer(leaf: GraphQLLeafType) -> Callable[[Any], Any]:
    """``leaf.coerce_output_value``, with a short way for the values a dashboard is full of:
    members of a Strawberry enum (its coercion compares the value with each of the enum's in
    turn) and Python ints in the 32-bit range (graphql-core's asks five questions first).
    Anything else takes the type's own coercion, errors included."""
    coerce = leaf.coerce_output_value
    if leaf is GraphQLInt:
        def coerce_int(value: Any) -> Any:
            if type(value) is int and GRAPHQL_MIN_INT <= value <= GRAPHQL_MAX_INT:
                return value
            return coerce(value)
        return coerce_int
    members = getattr(leaf, "wrapped_cls", None)
    if isinstance(leaf, GraphQLEnumType) and isinstance(members, type) and issubclass(members, Enum):
        # By identity: members are singletons, and an enum's ``__hash__`` is Python code.
        names = {id(member): coerce(member) for member in members if _coerces(coerce, member)}

        def coerce_enum(value: Any) -> Any:
            name = names.get(id(value)) if type(value) is members else None
            return coerce(value) if name is None else name
        return coerce_enum
    return coerce


def _coerces(coerce: Callable[[Any], Any], value: Any) -> bool:
    try:
        coerce(value)
    except Exception:  # noqa: BLE001 - such a member takes the slow way, and its error
        return False
    return True


def _is_plain(definition: StrawberryField | None, field_def: GraphQLField) -> bool:
    """A Strawberry field without a resolver or extension: reading the attribute is all its
    resolver would do (Strawberry marks that resolver ``_is_default``)."""
    return (
        definition is not None and definition.is_basic_field
        and definition.default_resolver is getattr
        and getattr(field_def.resolve, "_is_default", False)
    )


def _is_simple_resolver(definition: StrawberryField | None, field_def: GraphQLField) -> bool:
    """A resolver taking at most ``self`` and ``info``, without field extensions other than a
    ``@requires`` guard: Strawberry's wrapper would only build an ``Info``, convert no
    arguments and run the guard's check before calling it."""
    if definition is None or definition.base_resolver is None:
        return False
    if len(definition.extensions) > 1 or any(
        type(extension) is not RequiresPermission for extension in definition.extensions
    ):
        return False
    resolver = definition.base_resolver
    if resolver.parent_parameter is not None or resolver.root_parameter is not None:
        return False
    return getattr(field_def.resolve, "_is_default", None) is False  # Strawberry's own wrapper


class LinkgateExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor with per-selection-set plans (one instance per operation)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[int, tuple[GroupedFieldSet, GraphQLObjectType, Plan]] = {}
        manager = self.middleware_manager
        # A schema extension with a ``resolve`` hook must wrap every field: then the whole
        # operation takes graphql-core's path.
        self._planned = manager is None or manager.get_field_resolver(_probe) is _probe
        strawberry_schema = getattr(self.schema, "_strawberry_schema", None)  # as Strawberry's Info.schema
        # Exception handlers live in Strawberry's resolver wrapper: with any, never skip it.
        self._direct_calls = strawberry_schema is not None and not strawberry_schema.exception_handlers
        self._info_class = strawberry_schema.config.info_class if strawberry_schema else None

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet) -> Plan:
        key = id(grouped_field_set)
        cached = self._plans.get(key)
        if cached is not None and cached[0] is grouped_field_set and cached[1] is parent_type:
            return cached[2]
        steps = [
            _Step(response_name, details,
                  self.schema.get_field(parent_type, details[0].node.name.value), parent_type,
                  default_resolver=self.field_resolver, direct_calls=self._direct_calls)
            for response_name, details in grouped_field_set.items()
        ]
        # What the loop over objects reads, unpacked once: attribute lookups add up over
        # 25,000 fields.
        plan = [
            (step.kind, step.response_name, step.attribute, step.coerce, step.nullable,
             step.passthrough, step)
            for step in steps if step.kind != _UNKNOWN
        ]
        # Kept alive with its plan, the grouped field set's id cannot be reused meanwhile.
        self._plans[key] = (grouped_field_set, parent_type, plan)
        return plan

    def _subplan(self, return_type: GraphQLObjectType, details: FieldDetailsList) -> Plan | None:
        """The plan for the selection set below ``details`` on ``return_type``; ``None`` when
        it holds ``@defer`` usages, which only graphql-core's incremental path delivers."""
        grouped_field_set, new_defer_usages, _ = self.collect_subfields(return_type, details)
        return None if new_defer_usages else self._plan(return_type, grouped_field_set)

    # ------------------------------------------------------------------ fields

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        if not self._planned or position_context is not None:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        return self._execute_steps(
            parent_type, source_value, path, self._plan(parent_type, grouped_field_set)
        )

    def _execute_steps(
        self, parent_type: GraphQLObjectType, source_value: Any, path: Path | None, plan: Plan,
    ) -> Any:
        """``execute_fields`` on a planned selection set."""
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        execute = self._execute
        awaitable_fields: list[str] | None = None
        try:
            for kind, name, attribute, coerce, nullable, passthrough, step in plan:
                if kind == _LEAF:
                    value = getattr(source_value, attribute, Undefined)
                    if type(value) is passthrough:  # what coercion would return unchanged
                        results[name] = value
                        continue
                    if value is None:
                        if nullable:
                            results[name] = None
                            continue
                    elif value is not Undefined:
                        try:
                            coerced = coerce(value)  # type: ignore[misc]
                        except Exception:  # noqa: BLE001 - reported below, the usual way
                            coerced = None
                        if coerced is not None and coerced is not Undefined:
                            results[name] = coerced
                            continue
                    # A missing attribute, a null in a non-null field or a refused value:
                    # complete it the long way, which raises the usual error.
                    result = execute(step, source_value, Path(path, name, parent_type.name), read=True)
                elif kind == _CORE:
                    result = self.execute_field(
                        parent_type, source_value, step.details, Path(path, name, parent_type.name),
                        None,
                    )
                    if result is Undefined:
                        continue
                else:
                    result = execute(step, source_value, Path(path, name, parent_type.name),
                                     read=kind == _VALUE)
                results[name] = result
                if type(result) not in _SETTLED and is_awaitable(result):
                    if awaitable_fields is None:
                        awaitable_fields = [name]
                    else:
                        awaitable_fields.append(name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise

        if awaitable_fields is None:
            return results
        pending = awaitable_fields

        async def get_results() -> dict[str, Any]:
            if len(pending) == 1:
                field = pending[0]
                results[field] = await results[field]
            else:
                awaited = await gather_with_cancel(*(results[field] for field in pending))
                results.update(zip(pending, awaited, strict=True))
            return results

        return get_results()

    def _execute(self, step: _Step, source: Any, path: Path, *, read: bool) -> Any:
        """graphql-core's ``execute_field`` for one step: ``read`` takes the attribute, as
        Strawberry's default resolver would, without building an ``Info``."""
        return_type = step.return_type
        info: GraphQLResolveInfo | None = None
        try:
            if read:
                result = getattr(source, step.attribute)
            elif step.kind == _CALL:
                arguments: dict[str, Any] = {}
                # An ``Info`` only for a resolver or guard that reads it (and, later, for a
                # completion that needs one: ``_info``).
                if step.info_parameter is not None or step.guard is not None:
                    info = self.build_resolve_info(step.field_def, step.nodes, step.parent_type, path)  # type: ignore[arg-type]
                    strawberry_info = self._info_class(_raw_info=info, _field=step.definition)  # type: ignore[misc]
                    if step.guard is not None:
                        step.guard.check(source, strawberry_info)
                    if step.info_parameter is not None:
                        arguments[step.info_parameter] = strawberry_info
                result = step.call(source, **arguments) if step.passes_self else step.call(**arguments)
                if self.is_awaitable(result):
                    return self._complete_awaitable(step, info or self._info(step, path), path, result)
            else:
                info = self.build_resolve_info(step.field_def, step.nodes, step.parent_type, path)  # type: ignore[arg-type]
                first = step.details[0]
                arguments = get_argument_values(
                    step.field_def, first.node, self.variable_values,  # type: ignore[arg-type]
                    first.fragment_variable_values, self.hide_suggestions,
                ) if step.has_arguments else {}
                result = step.resolve(source, info, **arguments)
                if self.is_awaitable(result):
                    return self._complete_awaitable(step, info, path, result)
            completed = self._completer(step)(result, path, info)
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, step.details, path)
            return None
        if type(completed) not in _SETTLED and self.is_awaitable(completed):
            return self._await_completed(completed, return_type, step.details, path)
        return completed

    async def _complete_awaitable(self, step: _Step, info: GraphQLResolveInfo, path: Path,
                                  result: Awaitable[Any]) -> Any:
        try:
            # ``with_abort_signal`` adds a coroutine per field, for a signal Linkgate never sets.
            resolved = await (result if self.abort_signal is None else self.with_abort_signal(result))
            completed = self._completer(step)(resolved, path, info)
            if self.is_awaitable(completed):
                completed = await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, step.return_type, step.details, path)
            return None
        return completed

    async def _await_completed(self, completed: Awaitable[Any], return_type: GraphQLOutputType,
                               details: FieldDetailsList, path: Path) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, details, path)
            return None

    # ------------------------------------------------------------------ values

    def _completer(self, step: _Step) -> Completer:
        """The step's completer for its return type, made on first use."""
        if step.completer is None:
            step.completer = self._completer_for(step, step.return_type)
        return step.completer

    def _completer_for(self, step: _Step, output_type: GraphQLOutputType) -> Completer:
        """graphql-core's ``complete_value`` specialised, once per field, for ``output_type``:
        non-null, then an object type, a leaf or a list held in memory; any other shape
        (interfaces, unions, iterables that are not lists) goes to graphql-core's."""
        non_null = isinstance(output_type, GraphQLNonNull)
        named: Any = output_type.of_type if non_null else output_type  # type: ignore[attr-defined]
        null_message = (
            "Cannot return null for non-nullable field"
            f" {step.parent_type.name}.{step.nodes[0].name.value}."
        )

        complete_named: Completer
        if isinstance(named, GraphQLObjectType):
            complete_object = self._complete_object

            def complete_named(value: Any, path: Path, info: GraphQLResolveInfo | None) -> Any:
                return complete_object(step, named, value, path, info)

        elif isinstance(named, GraphQLLeafType):
            complete_leaf = self.complete_leaf_value
            coerce_leaf = _coercer(named)

            def complete_named(value: Any, path: Path, info: GraphQLResolveInfo | None) -> Any:
                coerced = coerce_leaf(value)
                if coerced is None or coerced is Undefined:
                    return complete_leaf(named, value)  # raises graphql-core's error
                return coerced

        elif isinstance(named, GraphQLList):
            item_type = named.of_type
            complete_item = self._completer_for(step, item_type)
            complete_items = self._complete_items

            def complete_named(value: Any, path: Path, info: GraphQLResolveInfo | None) -> Any:
                if isinstance(value, (list, tuple)):
                    return complete_items(step, item_type, complete_item, value, path, info)
                return self.complete_value(
                    named, step.details, info or self._info(step, path), path, value, None
                )

        else:

            def complete_any(value: Any, path: Path, info: GraphQLResolveInfo | None) -> Any:
                return self.complete_value(
                    output_type, step.details, info or self._info(step, path), path, value, None
                )

            return complete_any

        def complete(value: Any, path: Path, info: GraphQLResolveInfo | None) -> Any:
            if value is None or value is Undefined:
                if non_null:
                    raise TypeError(null_message)
                return None
            if isinstance(value, Exception):
                raise value
            return complete_named(value, path, info)

        return complete

    def _complete_object(self, step: _Step, object_type: GraphQLObjectType, value: Any,
                         path: Path, info: GraphQLResolveInfo | None) -> Any:
        """``complete_object_value``, running the field's cached plan for ``object_type``."""
        is_type_of = object_type.is_type_of
        if is_type_of is not None:
            if info is None and not _ignores_info(is_type_of):
                info = self._info(step, path)
            matches = is_type_of(value, info)
            if self.is_awaitable(matches):  # rare: let graphql-core await it
                return self.complete_object_value(object_type, step.details, info, path, value, None)
            if not matches:
                raise invalid_return_type_error(object_type, value, step.details)
        plan = step.subplans.get(object_type, _UNPLANNED)
        if plan is _UNPLANNED:
            plan = step.subplans[object_type] = self._subplan(object_type, step.details)
        if plan is None:  # deferred fragments below: graphql-core's incremental path
            return self.collect_and_execute_subfields(object_type, step.details, path, value, None)
        return self._execute_steps(object_type, value, path, plan)

    def _complete_items(self, step: _Step, item_type: GraphQLOutputType, complete_item: Completer,
                        items: list[Any] | tuple[Any, ...], path: Path,
                        info: GraphQLResolveInfo | None) -> Any:
        """``complete_iterable_value`` for a list in memory. ``@stream`` never reaches here:
        fields selected with directives take graphql-core's path (``_CORE``)."""
        completed_results: list[Any] = []
        awaitable_indices: list[int] = []
        is_awaitable = self.is_awaitable
        try:
            for index, item in enumerate(items):
                item_path = Path(path, index, None)
                try:
                    if is_awaitable(item):
                        completed = self.complete_awaitable_list_item_value(
                            item, item_type, step.details, info or self._info(step, path),
                            item_path, None,
                        )
                    else:
                        completed = complete_item(item, item_path, info)
                        if type(completed) not in _SETTLED and is_awaitable(completed):
                            completed = self._await_completed(
                                completed, item_type, step.details, item_path
                            )
                except Exception as raw_error:
                    # Re-raised for a non-null item type: then the whole list is the error.
                    self.handle_field_error(raw_error, item_type, step.details, item_path)
                    completed = None
                if type(completed) not in _SETTLED and is_awaitable(completed):
                    awaitable_indices.append(index)
                completed_results.append(completed)
        except Exception:
            if awaitable_indices:
                self.settle_in_background([completed_results[i] for i in awaitable_indices])
            raise

        if not awaitable_indices:
            return completed_results

        async def get_completed_results() -> list[Any]:
            if len(awaitable_indices) == 1:
                index = awaitable_indices[0]
                completed_results[index] = await completed_results[index]
            else:
                awaited = await gather_with_cancel(*(completed_results[i] for i in awaitable_indices))
                for index, result in zip(awaitable_indices, awaited, strict=True):
                    completed_results[index] = result
            return completed_results

        return get_completed_results()

    def _info(self, step: _Step, path: Path) -> GraphQLResolveInfo:
        """The ``Info`` graphql-core would have built, made only where something reads it."""
        return self.build_resolve_info(step.field_def, step.nodes, step.parent_type, path)  # type: ignore[arg-type]


@functools.cache
def _ignores_info(is_type_of: Callable[..., Any]) -> bool:
    """Strawberry's own ``is_type_of`` (for types with interfaces) never reads its ``Info``:
    a dashboard's 1,300 nodes then need none built. (Asked once per type's function.)"""
    return getattr(is_type_of, "__qualname__", "") == _STRAWBERRY_IS_TYPE_OF and \
        getattr(is_type_of, "__module__", "") == "strawberry.schema.schema_converter"


_STRAWBERRY_IS_TYPE_OF = "GraphQLCoreConverter.from_object.<locals>._get_is_type_of.<locals>.is_type_of"


def _probe(source: Any, info: Any, **arguments: Any) -> Any:
    """Compared by identity: a middleware manager without middleware returns it as it is."""
    return None
