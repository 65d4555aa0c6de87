"""schema.graphql is the printed schema: regenerate it with `linkgate export-schema`."""

from pathlib import Path

from schema import print_schema_sdl

ROOT = Path(__file__).resolve().parent.parent


def test_committed_schema_matches_the_code() -> None:
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == print_schema_sdl(), "schema.graphql is stale: run `linkgate export-schema`"


def test_the_directive_is_printed() -> None:
    sdl = print_schema_sdl()
    assert "directive @requires(permission: Permission!) on FIELD_DEFINITION | OBJECT" in sdl
    assert "type Invoice implements Node @requires(permission: INVOICES_READ)" in sdl
    assert "monthlyPrice: Money @requires(permission: INVOICES_READ)" in sdl


def test_the_docs_state_permissions_and_codes() -> None:
    """What schema.graphql documents beside the directives (tests/test_schema_docs.py has the rules)."""
    sdl = print_schema_sdl()
    assert '  """Requires `CREDITS_READ` on the account."""\n  creditBalance: Int @requires(permission: CREDITS_READ)' in sdl
    assert '"""Requires `INVOICES_READ` on the invoice\'s account, by every path."""\ntype Invoice implements Node' in sdl
    assert "  code: UserErrorCode!\n" in sdl
    assert "enum UserErrorCode {" in sdl
