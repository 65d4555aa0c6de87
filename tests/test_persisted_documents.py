"""Persisted documents (issue 14): automatic persisted queries for any client, trusted
documents from graphql-codegen's manifest, and trusted-documents-only for customers.

Over HTTP against the real app; the manifest's mistakes through the settings and the CLI."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql.language.parser import Parser
from sqlalchemy.ext.asyncio import AsyncEngine

import strawberry.schema.schema as strawberry_schema
from linkgate.app import create_app
from linkgate.settings import ConfigurationError, Settings
from tests.conftest import GraphQLClient, client_for, refused_at_the_edge
from tests.servers import run_cli

NOT_FOUND_BODY = {"errors": [{"message": "PersistedQueryNotFound",
                              "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]}
TRUSTED_ONLY = "This endpoint runs only the documents the app was built with (trusted documents)."

# The manifest the customer app was "built with".
TYPENAME = "query Typename { __typename }"
VIEWER = "query Viewer { viewer { user { name } } }"
ACCOUNT = "query Account($number: String!) { viewer { account(number: $number) { name } } }"
LOGIN = "mutation Login($input: LoginInput!) { login(input: $input) { token } }"
MANIFEST_DOCUMENTS = [TYPENAME, VIEWER, ACCOUNT, LOGIN]
FREE_TEXT = "{ viewer { user { email } } }"  # in no manifest


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def unique(text: str) -> str:
    """``text`` with a comment of its own: another hash, so no other test has registered it."""
    return f"{text} # {uuid.uuid4().hex}"


def apq(digest: str, version: Any = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


def bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


async def post(http: httpx.AsyncClient, body: Any, token: str | None = None, **headers: str) -> httpx.Response:
    return await http.post("/graphql", json=body, headers={**bearer(token), **headers})


async def get(http: httpx.AsyncClient, params: dict[str, Any], token: str | None = None) -> httpx.Response:
    encoded = {key: json.dumps(value) if isinstance(value, dict) else value for key, value in params.items()}
    return await http.get("/graphql", params=encoded, headers={"accept": "application/json", **bearer(token)})


def write_manifest(path: Path, documents: dict[str, Any]) -> Path:
    path.write_text(json.dumps(documents), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """graphql-codegen's persisted-documents.json for ``MANIFEST_DOCUMENTS``."""
    return write_manifest(tmp_path_factory.mktemp("manifest") / "persisted-documents.json",
                          {sha256(text): text for text in MANIFEST_DOCUMENTS})


@pytest.fixture(scope="session")
async def trusted(settings: Settings, engine: AsyncEngine, manifest: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app with the manifest; any document still runs."""
    app = create_app(settings.model_copy(update={"trusted_documents": manifest}), engine=engine)
    async with client_for(app) as http:
        yield http


@pytest.fixture(scope="session")
async def only(settings: Settings, engine: AsyncEngine, manifest: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app that runs only the manifest's documents for customers."""
    app = create_app(settings.model_copy(update={"trusted_documents": manifest, "trusted_documents_only": True}),
                     engine=engine)
    async with client_for(app) as http:
        yield http


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts graphql-core parses from now on, whichever cache or path asks."""
    texts: list[str] = []
    original = Parser.parse_document

    def counting(parser: Parser) -> Any:
        texts.append(parser._lexer.source.body)
        return original(parser)

    monkeypatch.setattr(Parser, "parse_document", counting)
    return texts


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The documents validated from now on (Strawberry's validation, behind ValidationCache)."""
    documents: list[Any] = []
    original = strawberry_schema.validate

    def counting(schema: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
        documents.append(document)
        return original(schema, document, *args, **kwargs)

    monkeypatch.setattr(strawberry_schema, "validate", counting)
    return documents


# --------------------------------------------------------------------------- APQ


async def test_an_unknown_hash_is_persisted_query_not_found(gql: GraphQLClient) -> None:
    """Apollo Server's answer exactly: HTTP 200 whatever the client accepts (a 4xx would make
    apollo-client stop using hashes), no ``data``, and no copy kept by a CDN."""
    digest = sha256(unique(TYPENAME))
    for accept in ("application/json", "application/graphql-response+json, application/json;q=0.9"):
        response = await post(gql.http, {"extensions": apq(digest)}, accept=accept)
        assert response.status_code == 200, response.text
        assert response.json() == NOT_FOUND_BODY
        assert response.headers["cache-control"] == "private, no-cache, must-revalidate"
    response = await get(gql.http, {"extensions": apq(digest)})
    assert (response.status_code, response.json()) == (200, NOT_FOUND_BODY)


async def test_a_registered_document_runs_by_hash_over_post_and_get(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    text = unique(ACCOUNT)
    digest, variables = sha256(text), {"number": "nope"}
    registered = await post(gql.http, {"query": text, "variables": variables, "extensions": apq(digest)},
                            tokens["olivia"])
    assert registered.json() == {"data": {"viewer": {"account": None}}}
    by_post = await post(gql.http, {"variables": variables, "extensions": apq(digest), "operationName": "Account"},
                         tokens["olivia"])
    assert by_post.status_code == 200 and by_post.json() == registered.json()
    assert "cache-control" not in by_post.headers
    by_get = await get(gql.http, {"extensions": apq(digest), "variables": variables}, tokens["olivia"])
    assert by_get.status_code == 200 and by_get.json() == registered.json()


async def test_a_document_registered_over_get_runs_by_hash(gql: GraphQLClient) -> None:
    text = unique(TYPENAME)
    registered = await get(gql.http, {"query": text, "extensions": apq(sha256(text))})
    assert registered.json() == {"data": {"__typename": "Query"}}
    hit = await post(gql.http, {"extensions": apq(sha256(text))})
    assert hit.json() == {"data": {"__typename": "Query"}}


async def test_a_hash_that_is_not_the_documents_is_refused(gql: GraphQLClient) -> None:
    text = unique(TYPENAME)
    response = await post(gql.http, {"query": text, "extensions": apq(sha256(text + " "))})
    error = refused_at_the_edge(response, "extensions.persistedQuery.sha256Hash")
    assert "does not match the document" in error["message"]
    # Nothing was kept under either hash.
    for digest in (sha256(text), sha256(text + " ")):
        assert (await post(gql.http, {"extensions": apq(digest)})).json() == NOT_FOUND_BODY


@pytest.mark.parametrize("version", [2, 0, "1", True, 1.0, None, [1]])
async def test_only_version_1_is_supported(gql: GraphQLClient, version: Any) -> None:
    for query in (None, TYPENAME):
        response = await post(gql.http, {"query": query, "extensions": apq(sha256(TYPENAME), version)})
        error = refused_at_the_edge(response, "extensions.persistedQuery.version")
        assert error["message"].startswith("Unsupported persisted query version")


@pytest.mark.parametrize(("extensions", "field"), [
    ({"persistedQuery": "x"}, "extensions.persistedQuery"),
    ({"persistedQuery": [1]}, "extensions.persistedQuery"),
    ({"persistedQuery": 7}, "extensions.persistedQuery"),
    ({"persistedQuery": {"version": 1}}, "extensions.persistedQuery.sha256Hash"),
    ({"persistedQuery": {"version": 1, "sha256Hash": 5}}, "extensions.persistedQuery.sha256Hash"),
    ({"persistedQuery": {"version": 1, "sha256Hash": None}}, "extensions.persistedQuery.sha256Hash"),
    ({"persistedQuery": {"version": 1, "sha256Hash": "abc"}}, "extensions.persistedQuery.sha256Hash"),
    ({"persistedQuery": {"version": 1, "sha256Hash": sha256(TYPENAME).upper()}}, "extensions.persistedQuery.sha256Hash"),
    ({"persistedQuery": {"version": 1, "sha256Hash": "z" * 64}}, "extensions.persistedQuery.sha256Hash"),
    ({"persistedQuery": {"version": 1, "sha256Hash": "a" * 90_000}}, "extensions.persistedQuery.sha256Hash"),
])
async def test_malformed_persisted_queries_are_400_naming_the_field(
    gql: GraphQLClient, extensions: dict[str, Any], field: str
) -> None:
    for body in ({"extensions": extensions}, {"query": TYPENAME, "extensions": extensions}):
        error = refused_at_the_edge(await post(gql.http, body), field)
        assert len(error["message"]) < 300  # never the value itself
    response = await get(gql.http, {"extensions": extensions}) if len(json.dumps(extensions)) < 10_000 else None
    if response is not None:
        refused_at_the_edge(response, field)
    refused_at_the_edge(await post(gql.http, [{"query": TYPENAME}, {"extensions": extensions}]), f"[1].{field}")


async def test_extensions_that_are_not_an_object_are_refused(gql: GraphQLClient) -> None:
    refused_at_the_edge(await post(gql.http, {"extensions": "x"}), "extensions")
    response = await gql.http.get("/graphql", params={"extensions": "[1]"}, headers={"accept": "application/json"})
    refused_at_the_edge(response, "extensions")


async def test_in_a_batch_each_operation_is_found_or_not_on_its_own(gql: GraphQLClient) -> None:
    """apollo's BatchHttpLink resends only the operations that were not found."""
    known, new = unique(TYPENAME), unique(TYPENAME)
    await post(gql.http, {"query": known, "extensions": apq(sha256(known))})
    response = await post(gql.http, [
        {"extensions": apq(sha256(known))},
        {"extensions": apq(sha256(new))},
        {"query": new, "extensions": apq(sha256(new))},
    ])
    assert response.status_code == 200
    assert response.json() == [{"data": {"__typename": "Query"}}, NOT_FOUND_BODY, {"data": {"__typename": "Query"}}]
    assert (await post(gql.http, {"extensions": apq(sha256(new))})).json() == {"data": {"__typename": "Query"}}


async def test_a_persisted_mutation_keeps_the_rules_of_mutations(gql: GraphQLClient) -> None:
    """Over GET: 405 as any mutation; in a batch: refused before anything runs."""
    text = unique(LOGIN)
    variables = {"input": {"email": f"{uuid.uuid4().hex}@example.com", "password": "wrong-password"}}
    first = await post(gql.http, {"query": text, "variables": variables, "extensions": apq(sha256(text))})
    assert first.status_code == 200 and first.json()["data"]["login"]["token"] is None
    over_get = await get(gql.http, {"extensions": apq(sha256(text)), "variables": variables})
    assert over_get.status_code == 405 and over_get.headers["allow"] == "POST"
    batch = await post(gql.http, [{"query": TYPENAME}, {"extensions": apq(sha256(text)), "variables": variables}])
    assert batch.status_code == 400 and "a batch may only hold queries" in batch.text


@pytest.mark.parametrize(("text", "why"), [
    ("{ viewer { user { " + " ".join(["name"] * 6000) + " } } }", "token"),  # over the token limit
    ("{ viewer { nope } }", "Cannot query field"),  # not valid
    ("{ viewer { user { name }", "Syntax Error"),  # does not parse
])
async def test_a_refused_document_is_never_registered(gql: GraphQLClient, tokens: dict[str, str], text: str, why: str) -> None:
    text = unique(text)
    response = await post(gql.http, {"query": text, "extensions": apq(sha256(text))}, tokens["olivia"])
    assert why in response.text
    assert (await post(gql.http, {"extensions": apq(sha256(text))})).json() == NOT_FOUND_BODY


async def test_the_registry_keeps_only_the_most_recently_used(settings: Settings, engine: AsyncEngine) -> None:
    app = create_app(settings.model_copy(update={"persisted_query_cache_size": 2}), engine=engine)
    a, b, c = (unique(TYPENAME) for _ in range(3))
    async with client_for(app) as http:
        async def run(text: str, register: bool = False) -> Any:
            body = {"extensions": apq(sha256(text)), **({"query": text} if register else {})}
            return (await post(http, body)).json()

        await run(a, register=True)
        await run(b, register=True)
        assert await run(a) == {"data": {"__typename": "Query"}}  # a is now the most recent
        await run(c, register=True)  # b, the least recently used, leaves
        assert await run(b) == NOT_FOUND_BODY
        assert await run(a) == await run(c) == {"data": {"__typename": "Query"}}


async def test_a_persisted_document_is_not_parsed_or_validated_again(
    gql: GraphQLClient, tokens: dict[str, str], parses: list[str], validations: list[Any]
) -> None:
    text = unique(VIEWER)
    await post(gql.http, {"query": text, "extensions": apq(sha256(text))}, tokens["olivia"])
    assert parses == [text] and len(validations) == 1
    for _ in range(3):
        hit = await post(gql.http, {"extensions": apq(sha256(text))}, tokens["olivia"])
        assert hit.json() == {"data": {"viewer": {"user": {"name": "Olivia Northwind"}}}}
    hit = await get(gql.http, {"extensions": apq(sha256(text))}, tokens["olivia"])
    assert hit.json()["data"]
    assert parses == [text] and len(validations) == 1


# --------------------------------------------------------------------------- trusted documents


@pytest.mark.parametrize("document_id", [sha256(VIEWER), f"sha256:{sha256(VIEWER)}"])
async def test_a_trusted_document_runs_by_its_document_id(
    trusted: httpx.AsyncClient, tokens: dict[str, str], document_id: str
) -> None:
    expected = {"data": {"viewer": {"user": {"name": "Olivia Northwind"}}}}
    assert (await post(trusted, {"documentId": document_id}, tokens["olivia"])).json() == expected
    assert (await get(trusted, {"documentId": document_id}, tokens["olivia"])).json() == expected
    by_hash = await post(trusted, {"extensions": apq(sha256(VIEWER))}, tokens["olivia"])
    assert by_hash.json() == expected


async def test_trusted_documents_are_parsed_and_validated_once_at_startup(
    trusted: httpx.AsyncClient, tokens: dict[str, str], parses: list[str], validations: list[Any]
) -> None:
    """Even after more other texts than the parser and validation caches hold."""
    for _ in range(300):
        await post(trusted, {"query": unique(TYPENAME)})
    parses.clear()
    validations.clear()
    for body in ({"documentId": sha256(ACCOUNT)}, {"extensions": apq(sha256(ACCOUNT))}, {"query": ACCOUNT}):
        response = await post(trusted, {**body, "variables": {"number": "nope"}}, tokens["olivia"])
        assert response.json() == {"data": {"viewer": {"account": None}}}
    assert parses == [] and validations == []


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"documentId": "sha256:" + "0" * 64}, "documentId", "No trusted document has this id"),
    ({"documentId": "md5:" + "0" * 32}, "documentId", "must name a trusted document by its SHA-256"),
    ({"documentId": "x" * 50_000}, "documentId", "must name a trusted document by its SHA-256"),
    ({"documentId": 42}, "documentId", "must be a string or null"),
    ({"documentId": sha256(VIEWER), "query": VIEWER}, "documentId", "alone"),
    ({"documentId": sha256(VIEWER), "extensions": apq(sha256(VIEWER))}, "documentId", "alone"),
])
async def test_malformed_or_unknown_document_ids_are_400(
    trusted: httpx.AsyncClient, body: dict[str, Any], field: str, message: str
) -> None:
    error = refused_at_the_edge(await post(trusted, body), field)
    assert message in error["message"] and len(error["message"]) < 300


async def test_a_document_id_without_a_manifest_says_so(gql: GraphQLClient) -> None:
    error = refused_at_the_edge(await post(gql.http, {"documentId": sha256(VIEWER)}), "documentId")
    assert "no trusted documents (LINKGATE_TRUSTED_DOCUMENTS)" in error["message"]


async def test_with_a_manifest_other_documents_and_apq_still_run(trusted: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    assert (await post(trusted, {"query": FREE_TEXT}, tokens["olivia"])).json()["data"]
    text = unique(TYPENAME)
    assert (await post(trusted, {"extensions": apq(sha256(text))})).json() == NOT_FOUND_BODY
    await post(trusted, {"query": text, "extensions": apq(sha256(text))})
    assert (await post(trusted, {"extensions": apq(sha256(text))})).json() == {"data": {"__typename": "Query"}}


# --------------------------------------------------------------------------- trusted documents only


def refused_as_untrusted(response: httpx.Response) -> dict[str, Any]:
    error = refused_at_the_edge(response)
    assert error["message"].startswith(TRUSTED_ONLY), error
    assert error["extensions"]["trustedDocumentsOnly"] is True
    return error


async def test_customers_run_the_manifests_documents(only: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    expected = {"data": {"viewer": {"user": {"name": "Olivia Northwind"}}}}
    for body in ({"documentId": sha256(VIEWER)}, {"documentId": f"sha256:{sha256(VIEWER)}"},
                 {"extensions": apq(sha256(VIEWER))}, {"query": VIEWER},
                 {"query": VIEWER, "extensions": apq(sha256(VIEWER))}):
        assert (await post(only, body, tokens["olivia"])).json() == expected, body
    assert (await get(only, {"documentId": sha256(VIEWER)}, tokens["olivia"])).json() == expected
    assert (await get(only, {"extensions": apq(sha256(VIEWER))}, tokens["olivia"])).json() == expected
    anonymous = await post(only, {"documentId": sha256(TYPENAME)})
    assert anonymous.json() == {"data": {"__typename": "Query"}}


async def test_customers_cannot_run_any_other_document(
    only: httpx.AsyncClient, tokens: dict[str, str], count_statements: Any
) -> None:
    olivia = tokens["olivia"]
    refused_as_untrusted(await post(only, {"query": FREE_TEXT}, olivia))
    refused_as_untrusted(await get(only, {"query": FREE_TEXT}, olivia))
    # A manifest document, changed by one character, is another document.
    refused_as_untrusted(await post(only, {"query": VIEWER + " "}, olivia))
    # An unknown hash, and registering a document: no PersistedQueryNotFound to retry after.
    text = unique(TYPENAME)
    error = refused_as_untrusted(await post(only, {"extensions": apq(sha256(text))}, olivia))
    assert error["extensions"]["field"] == "extensions.persistedQuery.sha256Hash"
    refused_as_untrusted(await get(only, {"extensions": apq(sha256(text))}, olivia))
    refused_as_untrusted(await post(only, {"query": text, "extensions": apq(sha256(text))}, olivia))
    refused_as_untrusted(await post(only, {"extensions": apq(sha256(text))}, olivia))  # nothing was kept
    refused_as_untrusted(await post(only, {"documentId": sha256(text)}, olivia))
    # Anonymous callers are customers, refused before any SQL (and before any parse).
    with count_statements() as counter:
        refused_as_untrusted(await post(only, {"query": "{ __typename }"}))
        refused_as_untrusted(await post(only, {"query": "{ nope"}))  # would be a syntax error
    assert counter.count == 0, counter.statements


async def test_a_batch_cannot_carry_another_document(only: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    response = await post(only, [{"documentId": sha256(VIEWER)}, {"query": FREE_TEXT}], tokens["olivia"])
    assert response.status_code == 400
    first, second = response.json()
    assert first == {"data": {"viewer": {"user": {"name": "Olivia Northwind"}}}}
    assert "data" not in second and second["errors"][0]["message"].startswith(TRUSTED_ONLY)
    assert second["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Registering inside a batch is refused as well.
    text = unique(TYPENAME)
    response = await post(only, [{"query": text, "extensions": apq(sha256(text))}], tokens["olivia"])
    assert response.status_code == 400 and response.json()[0]["errors"][0]["message"].startswith(TRUSTED_ONLY)


async def test_staff_may_send_any_document(only: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    """Internal tools and GraphiQL: full text, over POST and GET, introspection too."""
    agent = tokens["agent"]
    assert (await post(only, {"query": FREE_TEXT}, agent)).json() == {
        "data": {"viewer": {"user": {"email": "agent@linkgate.example"}}}}
    assert (await get(only, {"query": FREE_TEXT}, agent)).json()["data"]
    introspection = await post(only, {"query": "{ __schema { queryType { name } } }"}, tokens["finance"])
    assert introspection.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
    # A staff document with a mistake gets GraphQL's own answer, not a refusal.
    invalid = (await post(only, {"query": "{ viewer { nope } }"}, agent)).json()
    assert "Cannot query field 'nope'" in invalid["errors"][0]["message"]


async def test_a_forged_token_is_refused_as_before(only: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    forged = tokens["agent"][:-4] + ("AAAA" if not tokens["agent"].endswith("AAAA") else "BBBB")
    for body in ({"query": FREE_TEXT}, {"documentId": sha256(VIEWER)}):
        response = await post(only, body, forged)
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_revoked_session_is_refused_as_before(gql: GraphQLClient, only: httpx.AsyncClient) -> None:
    """Signed out on another replica (the same database): 401, not a trusted-documents refusal."""
    token = await gql.login("agent@linkgate.example")
    assert (await gql.execute("mutation { logout { ok } }", token=token))["data"]["logout"]["ok"]
    for body in ({"query": FREE_TEXT}, {"documentId": sha256(VIEWER)}):
        response = await post(only, body, token)
        assert response.status_code == 401, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# --------------------------------------------------------------------------- the manifest's mistakes


def _settings_with(manifest: Path | None, **more: str) -> None:
    environment = {"LINKGATE_SECRET_KEY": "k" * 40, **more}
    if manifest is not None:
        environment["LINKGATE_TRUSTED_DOCUMENTS"] = str(manifest)
    with pytest.MonkeyPatch.context() as patch:
        for key in list(__import__("os").environ):
            if key.startswith("LINKGATE_"):
                patch.delenv(key)
        for key, value in environment.items():
            patch.setenv(key, value)
        from linkgate.settings import load_settings

        load_settings()


# Over the depth limit (a validation rule), and over the selections in one set (a shape limit).
DEEP = ("{ viewer { accounts(first: 1) { edges { node { " + "linkGroups { head { " * 7 + "name" + " } }" * 7
        + " } } } } }")
WIDE = "{ viewer { user { " + " ".join(["name"] * 150) + " } } }"
MISTAKES: list[tuple[str, Any, str]] = [
    ("missing", None, "not a file: name graphql-codegen's persisted-documents.json (got '"),
    ("not-json", "{nope", "is not JSON"),
    ("a-list", [VIEWER], "must be a JSON object of SHA-256 hashes to documents"),
    ("empty", {}, "got an empty object"),
    ("sha1-keys", {hashlib.sha1(VIEWER.encode()).hexdigest(): VIEWER}, "hashAlgorithm: 'sha256'"),
    ("wrong-hash", {sha256(VIEWER): TYPENAME}, f"the document under {sha256(VIEWER)} has the hash {sha256(TYPENAME)}"),
    ("not-a-string", {sha256(VIEWER): {"query": VIEWER}}, "is an object, not a string"),
    ("no-parse", {sha256("{ viewer "): "{ viewer "}, "does not parse: Syntax Error"),
    ("invalid", {sha256("{ viewer { nope } }"): "{ viewer { nope } }"},
     "does not validate: Cannot query field 'nope' on type 'Viewer'."),
    ("too-deep", {sha256(DEEP): DEEP}, "does not validate: 'anonymous' exceeds maximum operation depth of 15"),
    ("too-wide", {sha256(WIDE): WIDE},
     "is over a limit: A selection set"),
]


@pytest.mark.parametrize(("name", "content", "expected"), MISTAKES, ids=[case[0] for case in MISTAKES])
def test_a_wrong_manifest_is_one_line_naming_the_setting(tmp_path: Path, name: str, content: Any, expected: str) -> None:
    path = tmp_path / "persisted-documents.json"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif content is not None:
        write_manifest(path, content)
    with pytest.raises(ConfigurationError) as raised:
        _settings_with(path)
    message = str(raised.value)
    assert message.startswith("LINKGATE_TRUSTED_DOCUMENTS: "), message
    assert expected in message and "\n" not in message, message


def test_trusted_documents_only_needs_a_manifest() -> None:
    with pytest.raises(ConfigurationError) as raised:
        _settings_with(None, LINKGATE_TRUSTED_DOCUMENTS_ONLY="true")
    assert str(raised.value).startswith("LINKGATE_TRUSTED_DOCUMENTS_ONLY: needs LINKGATE_TRUSTED_DOCUMENTS")


def test_a_wrong_manifest_given_to_create_app_is_refused(settings: Settings, tmp_path: Path) -> None:
    """``model_copy`` skips the settings' own checks: the app checks the manifest again."""
    path = write_manifest(tmp_path / "m.json", {sha256(VIEWER): TYPENAME})
    with pytest.raises(ConfigurationError, match="LINKGATE_TRUSTED_DOCUMENTS: .* has the hash"):
        create_app(settings.model_copy(update={"trusted_documents": path}))
    with pytest.raises(ConfigurationError, match="LINKGATE_TRUSTED_DOCUMENTS_ONLY: needs"):
        create_app(settings.model_copy(update={"trusted_documents_only": True}))


def test_serve_stops_on_a_wrong_manifest_in_one_line(tmp_path: Path) -> None:
    """Before migrating, listening or starting a worker: one line, exit status 2."""
    edited = write_manifest(tmp_path / "persisted-documents.json", {sha256(VIEWER): TYPENAME})
    for manifest in (edited, tmp_path / "missing.json"):
        result = run_cli(["serve", "--no-upgrade"], tmp_path, LINKGATE_SECRET_KEY="k" * 40,
                         LINKGATE_TRUSTED_DOCUMENTS=str(manifest))
        assert result.returncode == 2, result
        assert result.stderr.startswith("linkgate: configuration error: LINKGATE_TRUSTED_DOCUMENTS: "), result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
