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
