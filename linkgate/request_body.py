"""What a request to ``/graphql`` may carry, decided once, before GraphQL sees any of it.

A POST body is one JSON object or a batch (a list) of them; a GET carries the same fields as
query parameters. Each operation holds ``query``, ``operationName`` and ``documentId``
(strings), ``variables`` and ``extensions`` (objects), each of them null or absent if not
needed; what a ``documentId`` or an ``extensions.persistedQuery`` names is for
``linkgate.persisted_documents`` to say. No string anywhere in it may hold a character no one
can type or store (``resolvers.validation.untypable_character``: a NUL, a lone surrogate), so
no resolver, SQL statement or log line ever meets one; and no list in it may hold over
``MAX_LIST_ITEMS`` items. JSON is read by orjson, which refuses invalid UTF-8, nesting over
1,024 levels and numbers that are not finite.

Every refusal is a ``BadInput`` naming where the problem is (``field``: ``variables.input.name``,
``[2].query``), which the endpoint answers with HTTP 400 and ``BAD_USER_INPUT``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from auth.errors import BadInput
from resolvers.validation import untypable_character

# No dashboard sends longer lists (``nodes`` takes 100 IDs); GraphQL coerces every item of a
# list variable before a resolver can refuse it, so the edge bounds them.
MAX_LIST_ITEMS = 1_000


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of a request, each field of the type GraphQL expects."""

    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None
    # A trusted document's id (GraphQL over HTTP's persisted documents), instead of ``query``.
    document_id: str | None = None


def decode_json(data: str | bytes, *, what: str = "The body", path: str | None = None) -> Any:
    """``data`` as JSON, or a ``BadInput`` saying why it is not (and where, for a surrogate;
    ``path`` is where ``data`` itself sits in the request)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        reason = str(error)
    if "surrogate" in reason:
        located = _locate_surrogate(data, path)
        if located is not None:
            raise BadInput(
                f"`{located}` holds a lone surrogate (U+D800 to U+DFFF), which is not text.",
                field=located,
            )
    raise BadInput(f"{what} is not valid JSON: {reason}.")


def operations_in_body(body: bytes) -> Operation | list[Operation]:
    """The operation, or the batch of them, a POST body holds."""
    data = decode_json(body)
    check_values(data)
    if isinstance(data, list):
        if not data:
            raise BadInput("The batch is empty: send at least one operation.")
        return [_operation(item, f"[{index}].") for index, item in enumerate(data)]
    return _operation(data, "")


def operation_in_query_string(params: Mapping[str, str]) -> Operation:
    """The operation a GET request's query parameters hold (``variables`` and ``extensions``
    as JSON text, as GraphQL over HTTP says)."""
    data: dict[str, Any] = dict(params)
    for name in ("variables", "extensions"):
        if data.get(name):
            data[name] = decode_json(data[name], what=f"The `{name}` parameter", path=name)
        else:
            data.pop(name, None)
    check_values(data)
    return _operation(data, "")


def _nul(value: str) -> str | None:
    return "a NUL character (U+0000)" if "\x00" in value else None


def check_values(data: Any, *, problem_in: Callable[[str], str | None] = _nul) -> None:
    """Refuses ``data`` if a string in it (keys included) holds an untypable character, or a
    list in it holds over ``MAX_LIST_ITEMS`` items (GraphQL would coerce every one before any
    resolver could say "too many"). ``problem_in`` is ``_nul`` for what orjson decoded: it
    refuses surrogates itself. One pass, iterative (JSON may nest deeper than Python's
    recursion limit), and paths are only built for the value it refuses."""
    stack: list[tuple[Any, Any]] = [(data, None)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if problem_in(key) is not None:
                    _refuse(where, problem_in(key), " (in a key)")
                if isinstance(item, str):
                    if problem_in(item) is not None:
                        _refuse((where, key), problem_in(item))
                elif isinstance(item, (dict, list)):
                    stack.append((item, (where, key)))
        elif isinstance(value, list):
            if len(value) > MAX_LIST_ITEMS:
                location = _render(where)
                raise BadInput(
                    f"`{location}` holds {len(value)} items; a list may hold at most "
                    f"{MAX_LIST_ITEMS}.", field=location, limit="listItems",
                )
            for index, item in enumerate(value):
                if isinstance(item, str):
                    if problem_in(item) is not None:
                        _refuse((where, index), problem_in(item))
                elif isinstance(item, (dict, list)):
                    stack.append((item, (where, index)))
        elif isinstance(value, str) and problem_in(value) is not None:
            _refuse(where, problem_in(value))


def _refuse(where: Any, problem: str | None, suffix: str = "") -> None:
    location = _render(where)
    raise BadInput(f"`{location}`{suffix} holds {problem}, which no text may hold.", field=location)


def _operation(item: Any, prefix: str) -> Operation:
    where = prefix.rstrip(".") or "the body"
    if not isinstance(item, dict):
        raise BadInput(
            f"Expected {where} to be a JSON object with `query` and, if needed, `variables`, "
            f"`operationName` and `extensions`; got {json_kind(item)}.",
            **({"field": prefix.rstrip(".")} if prefix else {}),
        )
    query = _field(item, prefix, "query", str)
    variables = _field(item, prefix, "variables", dict)
    operation_name = _field(item, prefix, "operationName", str)
    extensions = _field(item, prefix, "extensions", dict)
    document_id = _field(item, prefix, "documentId", str)
    return Operation(query, variables, operation_name, extensions, document_id)


def _field(item: dict[str, Any], prefix: str, name: str, kind: type) -> Any:
    value = item.get(name)
    if value is None or isinstance(value, kind):
        return value
    expected = "a string" if kind is str else "an object"
    raise BadInput(
        f"`{prefix}{name}` must be {expected} or null; got {json_kind(value)}.",
        field=f"{prefix}{name}",
    )


def json_kind(value: Any) -> str:
    """What JSON calls ``value``'s type, for messages ("an array", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _locate_surrogate(data: str | bytes, path: str | None) -> str | None:
    """Where the lone surrogate orjson refused is, read with the standard library (which
    accepts one), to name the field. None if that reader cannot say."""
    try:
        document = json.loads(data)
        check_values(document if path is None else {path: document}, problem_in=untypable_character)
    except BadInput as error:
        return error.extensions.get("field")
    except (ValueError, RecursionError):
        return None
    return None


def _render(where: Any) -> str:
    """``(((None, "variables"), "input"), "name")`` as ``variables.input.name``."""
    path: list[str | int] = []
    while where is not None:
        where, part = where
        path.append(part)
    rendered = ""
    for part in reversed(path):
        if isinstance(part, int):
            rendered += f"[{part}]"
        else:
            shown = part if untypable_character(part) is None else "<an untypable key>"
            rendered += f".{shown}" if rendered else shown
    return rendered or "the body"
