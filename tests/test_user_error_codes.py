"""``UserErrorCode`` lists every code a mutation can return, and README documents each one.

One registry (``USER_ERROR_CODES`` in resolvers/user_errors.py) feeds the GraphQL enum. These
tests keep the three places that could drift from it honest: the source (every code literal a
resolver writes is read here from the syntax tree, so a new code cannot be missing from the
enum), the schema (the enum and its descriptions), and README's tables.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import graphql
import pytest

from auth.errors import LinkgateError
from resolvers.user_errors import USER_ERROR_CODES, UserError
from schema import build_schema
from schema.enums import UserErrorCode
from schema.payloads import UserError as UserErrorType
from tests.conftest import GraphQLClient

ROOT = Path(__file__).resolve().parent.parent
# Where codes are written: resolvers, the schema layer, and the card gateways (their
# ``CardRejected`` codes reach clients as user errors).
SOURCE_FOLDERS = ("resolvers", "schema", "linkgate")
# Where the helpers that take a code positionally may be defined.
USER_ERROR_MAKERS = ("resolvers/", "schema/")
CODE_SHAPE = re.compile(r"[A-Z][A-Z0-9_]*")


# --- reading the source for the codes it writes ------------------------------------------


@dataclass(frozen=True)
class CodeUse:
    code: str
    where: str


def _str_constant(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _callee(call: ast.Call) -> str | None:
    return getattr(call.func, "id", None) or getattr(call.func, "attr", None)


def _is_code_name(name: str, value: str) -> bool:
    """``code=`` always names a user error code; ``too_long_code=`` and other ``*_code``
    names do when the value has a code's shape (``decline_code="abandoned"`` is the
    processor's own word, not ours)."""
    return name == "code" or (name.endswith("_code") and CODE_SHAPE.fullmatch(value) is not None)


def positional_code_slots(trees: dict[str, ast.Module]) -> dict[str, int]:
    """Callables taking the code positionally, by the name they are called with: functions
    with a ``code`` parameter (``_error(code, message)``), classes whose ``__init__`` has one
    (``CardRejected(code, message)``), and the ``UserError`` dataclass under any import name.
    Only those defined where user errors are made (``linkgate.app.error_response`` takes an
    HTTP error's code)."""
    slots: dict[str, int] = {}
    index = [field.name for field in dataclasses.fields(UserError)].index("code")
    slots["UserError"] = index
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "resolvers.user_errors":
                for alias in node.names:
                    if alias.name == "UserError":
                        slots[alias.asname or alias.name] = index
            if not path.startswith(USER_ERROR_MAKERS):
                continue
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        names = [arg.arg for arg in item.args.posonlyargs + item.args.args][1:]
                        if "code" in names:
                            slots[node.name] = names.index("code")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "__init__":
                names = [arg.arg for arg in node.args.posonlyargs + node.args.args]
                if "code" in names and names[0] not in {"self", "cls"}:
                    slots[node.name] = names.index("code")
    return slots


def code_uses(trees: dict[str, ast.Module]) -> Iterator[CodeUse]:
    """Every string literal the source passes, or defaults, as a user error code."""
    slots = positional_code_slots(trees)
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                where = f"{path}:{node.lineno}"
                for keyword in node.keywords:
                    value = _str_constant(keyword.value)
                    if keyword.arg and value is not None and _is_code_name(keyword.arg, value):
                        yield CodeUse(value, where)
                slot = slots.get(_callee(node) or "")
                if slot is not None and slot < len(node.args):
                    value = _str_constant(node.args[slot])
                    if value is not None:
                        yield CodeUse(value, where)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = node.args
                positional = arguments.posonlyargs + arguments.args
                pairs = [*zip(positional[len(positional) - len(arguments.defaults):], arguments.defaults),
                         *zip(arguments.kwonlyargs, arguments.kw_defaults)]
                for argument, default in pairs:
                    value = _str_constant(default)
                    if value is not None and _is_code_name(argument.arg, value):
                        yield CodeUse(value, f"{path}:{node.lineno}")


def source_trees() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(ROOT)): ast.parse(path.read_text(encoding="utf-8"))
        for folder in SOURCE_FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))
    }


@pytest.fixture(scope="module")
def used_codes() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for use in code_uses(source_trees()):
        found.setdefault(use.code, []).append(use.where)
    return found


def test_every_code_the_source_writes_is_registered(used_codes: dict[str, list[str]]) -> None:
    missing = {code: places for code, places in used_codes.items() if code not in USER_ERROR_CODES}
    assert missing == {}, "add these to USER_ERROR_CODES (resolvers/user_errors.py)"


def test_every_registered_code_is_written_somewhere(used_codes: dict[str, list[str]]) -> None:
    """No code in the enum that no mutation can return (a removed one would stay documented)."""
    assert sorted(set(USER_ERROR_CODES) - set(used_codes)) == []


def test_the_scan_sees_the_codes_of_every_form(used_codes: dict[str, list[str]]) -> None:
    """Not vacuous: a literal ``code=``, a positional ``_error("…")``, a helper's ``*_code=``
    argument, a parameter's default, a gateway's ``CardRejected("…")``, a schema-side value."""
    assert len(used_codes) >= 60
    for code, place in [
        ("INSUFFICIENT_CREDITS", "resolvers/ledger.py"),
        ("PAYMENT_ABANDONED", "resolvers/payments.py"),
        ("PAYMENT_IN_PROGRESS", "resolvers/payments.py"),
        ("PAYMENT_PENDING", "resolvers/payments.py"),
        ("PAYMENTS_UNAVAILABLE", "resolvers/payment_methods.py"),
        ("IDEMPOTENCY_KEY_REUSED", "resolvers/payments.py"),
        ("TOO_MANY_CC", "resolvers/ticket_mutations.py"),
        ("TOO_LONG", "resolvers/validation.py"),
        ("INVALID_CARD_TOKEN", "linkgate/card_gateways.py"),
        ("PROOF_REQUIRED", "schema/links.py"),
    ]:
        assert any(where.startswith(place) for where in used_codes.get(code, [])), (code, place)


def test_the_scan_reads_every_form_it_claims() -> None:
    source = '''
from resolvers.user_errors import UserError as Value
def _error(code, message): ...
class Refused(Exception):
    def __init__(self, code, message): ...
def clean(text, too_long_code="A_DEFAULT"): ...
Value("message", "POSITIONAL")
Value(message="m", code="KEYWORD")
_error("HELPER", "m")
Refused("GATEWAY", "m")
clean("x", too_long_code="NAMED")
Outcome("declined", decline_code="abandoned", failure_code=None)
'''
    elsewhere = """
def error_response(status, code, message): ...
error_response(400, "BAD_USER_INPUT", "m")
"""
    found = {use.code for use in code_uses({"resolvers/example.py": ast.parse(source),
                                            "linkgate/example.py": ast.parse(elsewhere)})}
    assert found == {"A_DEFAULT", "POSITIONAL", "KEYWORD", "HELPER", "GATEWAY", "NAMED"}


# --- the registry and the resolver-side UserError ------------------------------------------


def test_a_user_error_with_an_unknown_code_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="NO_SUCH_CODE"):
        UserError(message="Nope.", code="NO_SUCH_CODE")
    assert UserError(message="Paid.", code="ALREADY_PAID").code == "ALREADY_PAID"


def test_every_code_is_described() -> None:
    for code, meaning in USER_ERROR_CODES.items():
        assert CODE_SHAPE.fullmatch(code), code
        assert meaning.strip() and meaning.endswith("."), code
        assert "|" not in meaning, f"{code}: a pipe would break README's table"


# --- the GraphQL enum ---------------------------------------------------------------------


def test_the_enum_is_the_registry() -> None:
    definition = UserErrorCode.__strawberry_definition__  # type: ignore[attr-defined]
    assert {value.name: value.description for value in definition.values} == USER_ERROR_CODES
    assert UserErrorCode("ALREADY_PAID") == "ALREADY_PAID"  # a StrEnum: equal to its code


def test_user_error_code_is_the_enum_in_the_schema() -> None:
    printed = graphql.build_schema(build_schema().as_str())
    user_error = printed.type_map["UserError"]
    enum = printed.type_map["UserErrorCode"]
    assert isinstance(user_error, graphql.GraphQLObjectType) and isinstance(enum, graphql.GraphQLEnumType)
    assert str(user_error.fields["code"].type) == "UserErrorCode!"
    assert {name: value.description for name, value in enum.values.items()} == USER_ERROR_CODES


def test_the_payload_type_converts_every_code() -> None:
    for code in USER_ERROR_CODES:
        converted = UserErrorType.from_value(UserError(message="m", code=code, field=["x"]))
        assert converted.code == code and converted.code is UserErrorCode(code)


async def test_introspection_lists_the_codes_with_their_meaning(gql: GraphQLClient) -> None:
    result = await gql.execute(
        '{ __type(name: "UserErrorCode") { kind enumValues { name description } } }'
    )
    answer = result["data"]["__type"]
    assert answer["kind"] == "ENUM"
    assert {value["name"]: value["description"] for value in answer["enumValues"]} == USER_ERROR_CODES


async def test_a_user_error_still_carries_its_code_as_a_plain_string(gql: GraphQLClient) -> None:
    """The type changed from ``String`` to the enum; what a client reads did not."""
    result = await gql.execute(
        'mutation { refreshSession(input: {refreshToken: "not-a-token"}) '
        "{ token userErrors { code field } } }"
    )
    assert result["data"]["refreshSession"] == {
        "token": None, "userErrors": [{"code": "INVALID_TOKEN", "field": ["refreshToken"]}],
    }


# --- README's tables ------------------------------------------------------------------------

README = ROOT / "README.md"
ALL_CODES_HEADER = ["code", "meaning"]
# A token in a "user errors" cell followed by "(error)" or "error" is a GraphQL error code.
CELL_TOKEN = re.compile(r"`([A-Z][A-Z0-9_]*\*?)`(\s*\(error\)|\s+error\b)?")


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Each table as rows of cells (the separator row left out; ``\\|`` is a pipe in a cell)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def graphql_error_codes() -> set[str]:
    codes = {"BAD_USER_INPUT", "INTERNAL_SERVER_ERROR"}
    pending = [LinkgateError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return codes


def readme_all_codes_table(text: str) -> list[list[str]]:
    found = [table for table in markdown_tables(text) if table[0] == ALL_CODES_HEADER]
    assert len(found) == 1, "README needs one table with the columns | code | meaning |"
    return found[0][1:]


def expected_all_codes_rows() -> str:
    return "\n".join(f"| `{code}` | {USER_ERROR_CODES[code]} |" for code in sorted(USER_ERROR_CODES))


def user_error_cells(text: str) -> Iterator[str]:
    """Every cell of a "user errors" column, in every table."""
    for table in markdown_tables(text):
        columns = [index for index, name in enumerate(table[0]) if "user errors" in name.lower()]
        for row in table[1:]:
            for index in columns:
                if index < len(row):
                    yield row[index]


def documented_codes(text: str) -> tuple[set[str], list[str]]:
    """The user error codes README's "user errors" columns name (``NAME_*`` standing for each
    ``NAME_…`` code), and the problems found reading them."""
    codes: set[str] = set()
    problems: list[str] = []
    errors = graphql_error_codes()
    for cell in user_error_cells(text):
        for match in CELL_TOKEN.finditer(cell):
            token, is_error = match.group(1), match.group(2)
            if is_error:
                if token not in errors:
                    problems.append(f"{token}: marked as an error, but no error has this code")
                continue
            if token.endswith("*"):
                named = {code for code in USER_ERROR_CODES if code.startswith(token[:-1])}
                if not named:
                    problems.append(f"{token}: matches no UserErrorCode")
                codes |= named
            elif token in USER_ERROR_CODES:
                codes.add(token)
            else:
                problems.append(f"{token}: not a UserErrorCode (an error? write `{token}` (error))")
    return codes, problems


def test_readme_lists_every_code_with_its_meaning() -> None:
    rows = readme_all_codes_table(README.read_text(encoding="utf-8"))
    listed = {row[0].strip("`"): row[1] for row in rows}
    assert listed == USER_ERROR_CODES, (
        "README's 'All userErrors codes' table is stale; its rows are:\n" + expected_all_codes_rows()
    )
    assert [row[0] for row in rows] == [f"`{code}`" for code in sorted(USER_ERROR_CODES)]


def test_readme_user_error_columns_name_only_real_codes() -> None:
    _codes, problems = documented_codes(README.read_text(encoding="utf-8"))
    assert problems == []


def test_every_code_is_documented_with_the_mutations_that_return_it() -> None:
    """Beyond the list of all codes: each one sits in the row of a mutation returning it."""
    codes, _problems = documented_codes(README.read_text(encoding="utf-8"))
    assert sorted(set(USER_ERROR_CODES) - codes) == []


def test_the_readme_checks_can_fail() -> None:
    text = """
| mutation | needs | user errors (`code`) |
|---|---|---|
| `a` | — | `ALREADY_PAID`, `NO_SUCH_CODE`, `NAME_*`, `NOPE_*`, `RATE_LIMITED`, `NOT_FOUND` error, `MADE_UP` (error) |

| code | meaning |
|---|---|
| `ALREADY_PAID` | Paid. |
"""
    codes, problems = documented_codes(text)
    assert "ALREADY_PAID" in codes and "NAME_EMPTY" in codes and "NOT_FOUND" not in codes
    assert [problem.split(":")[0] for problem in problems] == ["NO_SUCH_CODE", "NOPE_*", "RATE_LIMITED", "MADE_UP"]
    assert readme_all_codes_table(text) == [["`ALREADY_PAID`", "Paid."]]
