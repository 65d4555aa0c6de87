"""What a request to ``/graphql`` may carry, decided once, before GraphQL sees any of it.

A POST body is one JSON object or a batch (a list) of them; a GET carries the same fields as
query parameters. Each operation holds ``query`` and ``operationName`` (strings),
``variables`` and ``extensions`` (objects), each of them null or absent if not needed. No
string anywhere in it may hold a character no one can type or store
(``resolvers.validation.untypable_character``: a NUL, a lone surrogate), so no resolver, SQL
statement or log line ever meets one. JSON is read by orjson, which refuses invalid UTF-8,
nesting over 1,024 levels and numbers that are not finite.

Every refusal is a ``BadInput`` naming where the problem is (``field``: ``variables.input.name``,
``[2].query``), which the endpoint answers with HTTP 400 and ``BAD_USER_INPUT``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from auth.errors import BadInput
from resolvers.validation import untypable_character

# How an untypable character can be written in JSON text (raw ones are invalid JSON, and
# orjson refuses every surrogate escape it cannot pair): only the NUL's escape gets through.
_NUL_ESCAPE = "\\u0000"


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of a request, each field of the type GraphQL expects."""

    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None


def decode_json(data: str | bytes, *, what: str = "The body") -> Any:
    """``data`` as JSON, or a ``BadInput`` saying why it is not (and where, for a surrogate)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        reason = str(error)
    if "surrogate" in reason:
        located = _locate_surrogate(data)
        if located is not None:
            raise BadInput(
                f"`{located}` holds a lone surrogate (U+D800 to U+DFFF), which is not text.",
                field=located,
            )
    raise BadInput(f"{what} is not valid JSON: {reason}.")


def operations_in_body(body: bytes) -> Operation | list[Operation]:
    """The operation, or the batch of them, a POST body holds."""
    data = decode_json(body)
    check_text(data, may_hold_nul=_NUL_ESCAPE.encode() in body)
    if isinstance(data, list):
        return [_operation(item, f"[{index}].") for index, item in enumerate(data)]
    return _operation(data, "")


def operation_in_query_string(params: Mapping[str, str]) -> Operation:
    """The operation a GET request's query parameters hold (``variables`` and ``extensions``
    as JSON text, as GraphQL over HTTP says)."""
    data: dict[str, Any] = dict(params)
    may_hold_nul = False
    for name in ("variables", "extensions"):
        if data.get(name):
            may_hold_nul = may_hold_nul or _NUL_ESCAPE in data[name]
            data[name] = decode_json(data[name], what=f"The `{name}` parameter")
        else:
            data.pop(name, None)
    check_text(data, may_hold_nul=may_hold_nul)
    return _operation(data, "")


def check_text(data: Any, *, may_hold_nul: bool = True) -> None:
    """Refuses ``data`` if any string in it (keys included) holds an untypable character.
    Skipped when its JSON text had no NUL escape: orjson has refused everything else."""
    if not may_hold_nul and not _holds_raw_nul(data):
        return
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:  # iterative: a JSON value may nest deeper than Python's recursion limit
        value, path = stack.pop()
        if isinstance(value, str):
            problem = untypable_character(value)
            if problem is not None:
                where = _render(path)
                raise BadInput(f"`{where}` holds {problem}, which no text may hold.", field=where)
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.append((key, path))
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, index)) for index, item in enumerate(value))


def _holds_raw_nul(data: Any) -> bool:
    """Query parameters arrive decoded: a ``%00`` is a NUL already."""
    return isinstance(data, dict) and any(
        isinstance(value, str) and "\x00" in value for value in data.values()
    )


def _operation(item: Any, prefix: str) -> Operation:
    where = prefix.rstrip(".") or "the body"
    if not isinstance(item, dict):
        raise BadInput(
            f"Expected {where} to be a JSON object with `query` and, if needed, `variables`, "
            f"`operationName` and `extensions`; got {_json_kind(item)}.",
            field=prefix.rstrip(".") or None,
        )
    query = _field(item, prefix, "query", str)
    variables = _field(item, prefix, "variables", dict)
    operation_name = _field(item, prefix, "operationName", str)
    extensions = _field(item, prefix, "extensions", dict)
    return Operation(query, variables, operation_name, extensions)


def _field(item: dict[str, Any], prefix: str, name: str, kind: type) -> Any:
    value = item.get(name)
    if value is None or isinstance(value, kind):
        return value
    expected = "a string" if kind is str else "an object"
    raise BadInput(
        f"`{prefix}{name}` must be {expected} or null; got {_json_kind(value)}.",
        field=f"{prefix}{name}",
    )


def _json_kind(value: Any) -> str:
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


def _locate_surrogate(data: str | bytes) -> str | None:
    """Where the lone surrogate orjson refused is, read with the standard library (which
    accepts one), to name the field. None if that reader cannot say."""
    try:
        document = json.loads(data)
        check_text(document)
    except BadInput as error:
        return error.extensions.get("field")
    except (ValueError, RecursionError):
        return None
    return None


def _render(path: tuple[str | int, ...]) -> str:
    rendered = ""
    for part in path:
        if isinstance(part, int):
            rendered += f"[{part}]"
        else:
            shown = part if untypable_character(part) is None else "<an untypable key>"
            rendered += f".{shown}" if rendered else shown
    return rendered or "the body"
