"""GraphiQL served by the gateway itself (linkgate/graphiql.py), offline.

Over HTTP: the page loads only /graphiql/ files, under a strict Content-Security-Policy; the
files have their content types and a year of caching; no path leaves the folder; without the
folder the page says how to install it (503). In headless Chromium, against a real demo
gateway that is the only origin the browser may reach: sign in with the login mutation, put
the token in the headers editor, run the README's dashboard query, open the docs and the
explorer; and a subscription's events arrive in the result pane.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Error as PlaywrightError, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine

import linkgate.graphiql
from linkgate.app import create_app
from linkgate.demo import DEMO_PASSWORD
from linkgate.graphiql import ASSETS, INSTALL_HINT, MANIFEST, START_SCRIPT, collect, installed
from linkgate.settings import Settings
from schema import build_schema
from tests.browser import browser_page, demo_gateway, eventually, needs_chromium
from tests.conftest import client_for
from tests.servers import Server

ROOT = Path(__file__).resolve().parent.parent
HTML = {"accept": "text/html"}
OWNER = "olivia@northwind.example"  # README: the owner of four Northwind accounts
HAS_SUBSCRIPTIONS = build_schema().get_type_by_name("Subscription") is not None


def readme_dashboard_query() -> str:
    """The dashboard query of the README's "An example", on one line."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## An example"):]
    query = re.search(r"```graphql\n(.*?)```", section, re.S)
    assert query, "README's 'An example' has no graphql block"
    return " ".join(query.group(1).split())


def page_assets(page: str) -> list[str]:
    return re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', page)


# --- over HTTP, in process -----------------------------------------------------------------

@pytest.fixture(scope="module")
def assets_installed() -> None:
    if installed() is None:
        pytest.fail(f"{INSTALL_HINT} (`make test` does it)")


async def test_the_page_loads_only_its_own_files_under_a_strict_policy(
    gql: Any, assets_installed: None
) -> None:
    response = await gql.http.get("/graphql", headers=HTML)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    page = response.text
    assert "<script>" not in page and "style=" not in page, "inline code would need 'unsafe-inline'"
    sources = page_assets(page)
    assert sources.pop(0) == "data:,", sources  # the icon: no request at all
    assert len(sources) == len(ASSETS) + 1, sources  # and the page's own start script
    for source in sources:
        assert source.startswith("/graphiql/"), source
        served = await gql.http.get(source)
        assert served.status_code == 200, source
        kind = "text/css" if source.endswith(".css") else "text/javascript"
        assert served.headers["content-type"] == f"{kind}; charset=utf-8", source
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert served.headers["x-content-type-options"] == "nosniff"
        again = await gql.http.get(source, headers={"if-none-match": served.headers["etag"]})
        assert again.status_code == 304 and again.headers["cache-control"] == served.headers["cache-control"]
    assert "@graphiql/plugin-explorer@" in page and "graphiql-start-" in page


@pytest.mark.parametrize("path", [
    "/graphiql/..%2fgraphiql.py",
    "/graphiql/..%2F..%2Fpyproject.toml",
    "/graphiql/%2e%2e%2fgraphiql.py",
    "/graphiql/%2e%2e/%2e%2e/pyproject.toml",
    "/graphiql/react@18.3.1/..%2f..%2f..%2fgraphiql.py",
    "/graphiql/%2fetc%2fpasswd",
    "/graphiql//etc/passwd",
    "/graphiql/",
    "/graphiql/react@18.3.1/umd/",
    "/graphiql/no-such-file.js",
    "/graphiql/%00.js",
])
async def test_no_path_leaves_the_folder(gql: Any, assets_installed: None, path: str) -> None:
    response = await gql.http.get(path)
    assert response.status_code == 404, (path, response.status_code, response.text[:200])
    assert "def " not in response.text and "root:" not in response.text


async def test_only_get_reads_the_files(gql: Any, assets_installed: None) -> None:
    name = installed()
    assert name is not None
    response = await gql.http.post(f"/graphiql/{name.start}")
    assert response.status_code == 405


async def test_without_the_files_the_page_says_how_to_install_them(
    settings: Settings, engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(linkgate.graphiql, "ASSETS_DIR", tmp_path / "never-installed")
    async with client_for(create_app(settings, engine=engine)) as http:
        page = await http.get("/graphql", headers=HTML)
        assert page.status_code == 503
        assert "make graphiql-assets" in page.text and "GraphiQL" in page.text
        assert "content-security-policy" in page.headers
        asset = await http.get("/graphiql/graphiql@4.1.2/graphiql.min.js")
        assert asset.status_code == 503 and "make graphiql-assets" in asset.text
        api = await http.post("/graphql", json={"query": "{ __typename }"})
        assert api.json() == {"data": {"__typename": "Query"}}


async def test_half_an_install_counts_as_none(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps({"packages": {"react": "18.3.1"}, "start": "x.js"}))
    assert installed(tmp_path) is None
    (tmp_path / MANIFEST).write_text("{not json")
    assert installed(tmp_path) is None


async def test_graphiql_off_serves_no_files(settings: Settings, engine: AsyncEngine, assets_installed: None) -> None:
    found = installed()
    assert found is not None
    async with client_for(create_app(settings.model_copy(update={"graphiql": False}), engine=engine)) as http:
        assert (await http.get(f"/graphiql/{found.start}")).status_code == 404
        assert "graphiql-start" not in (await http.get("/graphql", headers=HTML)).text


def test_collect_copies_the_listed_files_and_names_the_script_by_its_digest(tmp_path: Path) -> None:
    npm = tmp_path / "assets"
    for asset in ASSETS:
        package = npm / "node_modules" / asset.package
        package.mkdir(parents=True, exist_ok=True)
        (package / "package.json").write_text(json.dumps({"version": "1.2.3"}))
        (package / asset.path).parent.mkdir(parents=True, exist_ok=True)
        (package / asset.path).write_text(f"/* {asset.package} {asset.path} */")
    (npm / "node_modules" / "react" / "LICENSE").write_text("MIT")
    (npm / "node_modules" / "react" / "secret.js").write_text("not listed")
    (npm / START_SCRIPT).write_text("start();")
    destination = tmp_path / "out" / "graphiql_assets"
    destination.mkdir(parents=True)
    (destination / "stale.js").write_text("from an older install")

    result = collect(npm, destination)

    assert installed(destination) == result
    assert re.fullmatch(r"graphiql-start-[0-9a-f]{16}\.js", result.start)
    assert (destination / result.start).read_text() == "start();"
    assert (destination / "react@1.2.3" / "LICENSE").read_text() == "MIT"
    files = {path.relative_to(destination).as_posix() for path in destination.rglob("*") if path.is_file()}
    assert files == {MANIFEST, result.start, "react@1.2.3/LICENSE",
                     *(asset.served_as("1.2.3") for asset in ASSETS)}
    assert sorted(path.name for path in destination.parent.iterdir()) == ["graphiql_assets"]

    (npm / "node_modules" / "graphiql" / "package.json").unlink()
    with pytest.raises(SystemExit, match="graphiql is not installed"):
        collect(npm, destination)
    assert installed(destination) == result, "a failed install leaves the last one in place"


# --- a real gateway ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if installed() is None:
        pytest.fail(f"{INSTALL_HINT} (`make test` does it)")
    with demo_gateway(tmp_path_factory.mktemp("graphiql-gateway")) as server:
        yield server


def raw_get(base: str, path: str) -> tuple[int, bytes]:
    """``GET path`` exactly as written: no client normalises the dots away."""
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("path", [
    "/graphiql/../graphiql.py", "/graphiql/../../pyproject.toml", "/graphiql/..%2fgraphiql.py",
    "/graphiql/..%2f..%2fpyproject.toml", "/graphiql/%2e%2e%2f%2e%2e%2fREADME.md",
    "/graphiql/react@18.3.1/../../graphiql.py", "/graphiql/..\\graphiql.py",
])
def test_no_path_leaves_the_folder_on_a_real_server(gateway: Server, path: str) -> None:
    status, body = raw_get(gateway.base, path)
    assert status in (400, 404), (path, status)
    assert b"def graphiql_page" not in body and b"[project]" not in body and b"# Linkgate" not in body


async def run_in_graphiql(page: Page, query: str) -> None:
    """Replaces the query editor's text (as a paste: CodeMirror closes no brackets), prettifies
    it and runs it."""
    editor = page.locator(".graphiql-query-editor .CodeMirror")
    await editor.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(query)
    await page.get_by_role("button", name="Prettify query (Shift-Ctrl-P)").click()
    # GraphiQL reads the operation's name from the editor after a debounce: as a person does,
    # let it catch up before clicking (else it runs with the previous text's operation name).
    await page.wait_for_timeout(600)
    await page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()


async def shown_result(page: Page, expected: str) -> Any:
    """The result pane's JSON, once it shows ``expected``."""
    result = page.locator(".graphiql-response")
    await expect(result).to_contain_text(expected, timeout=15_000)
    return json.loads(await result.locator(".CodeMirror").evaluate("node => node.CodeMirror.getValue()"))


async def sign_in_through_graphiql(page: Page) -> str:
    await run_in_graphiql(page, 'mutation { login(input: {email: "%s", password: "%s"}) '
                                "{ token expiresAt userErrors { code } } }" % (OWNER, DEMO_PASSWORD))
    login = (await shown_result(page, '"token"'))["data"]["login"]
    assert login["userErrors"] == [] and login["token"], login
    headers = page.locator(".graphiql-editor-tool .CodeMirror").filter(visible=True)
    await expect(headers).to_contain_text("Bearer <token>")  # the hint, sent as nothing
    await headers.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(json.dumps({"Authorization": f"Bearer {login['token']}"}))
    return str(login["token"])


@needs_chromium
async def test_graphiql_signs_in_and_shows_the_dashboard_offline(gateway: Server, tmp_path: Path) -> None:
    async with browser_page(gateway.base) as (page, traffic):
        await page.goto(f"{gateway.base}/graphql")
        await expect(page.locator(".graphiql-container")).to_be_visible(timeout=20_000)
        await expect(page).to_have_title("Linkgate · GraphiQL")

        await sign_in_through_graphiql(page)
        await run_in_graphiql(page, readme_dashboard_query())
        dashboard = await shown_result(page, "ACC-100001")
        await expect(page.locator(".graphiql-response")).to_contain_text("Northwind Head Office")
        assert "errors" not in dashboard, dashboard
        numbers = [edge["node"]["number"] for edge in dashboard["data"]["viewer"]["accounts"]["edges"]]
        assert len(numbers) == 2 and "ACC-100001" in numbers

        await page.get_by_role("button", name="Show Documentation Explorer").click()
        docs = page.locator(".graphiql-doc-explorer")
        await expect(docs).to_contain_text("Root Types")
        await expect(docs).to_contain_text("mutation: Mutation")
        await page.get_by_role("button", name="Show GraphiQL Explorer").click()
        explorer = page.locator(".graphiql-explorer-root")
        await expect(explorer).to_be_visible()
        await expect(explorer).to_contain_text("viewer")
        await page.screenshot(path=str(tmp_path / "graphiql.png"))
        print(f"screenshot: {tmp_path / 'graphiql.png'}")

        traffic.assert_clean()
        assert {urlsplit(url).path for url in traffic.requested} >= {"/graphql"}
        assert any("/graphiql/graphiql@" in url for url in traffic.requested)


@needs_chromium
async def test_the_browser_blocks_what_is_not_the_gateway(gateway: Server) -> None:
    """Both fences hold and report: the page's policy stops a fetch elsewhere before it leaves,
    and the test's own route refuses anything the policy would not stop."""
    async with browser_page(gateway.base) as (page, traffic):
        await page.goto(f"{gateway.base}/graphql")
        await expect(page.locator(".graphiql-container")).to_be_visible(timeout=20_000)
        await page.evaluate("() => fetch('https://unpkg.com/graphiql').catch(() => null)")
        await eventually(lambda: bool(traffic.violations))
        assert traffic.violations == ["connect-src blocked https://unpkg.com/graphiql"]
        assert traffic.refused == []
        with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
            await page.goto("https://unpkg.com/graphiql@4.1.2/graphiql.min.js")
        assert traffic.refused == ["https://unpkg.com/graphiql@4.1.2/graphiql.min.js"]


@needs_chromium
@pytest.mark.skipif(not HAS_SUBSCRIPTIONS, reason="the schema has no Subscription type yet")
async def test_a_subscription_in_graphiql_shows_events_as_they_come(gateway: Server) -> None:
    async with browser_page(gateway.base) as (page, traffic):
        await page.goto(f"{gateway.base}/graphql")
        await expect(page.locator(".graphiql-container")).to_be_visible(timeout=20_000)
        token = await sign_in_through_graphiql(page)
        await run_in_graphiql(page, "subscription { ticketUpdated { ticket { number } message { body } } }")
        try:
            await eventually(traffic.subscribed)
        except AssertionError:
            shown = await page.locator(".graphiql-response").inner_text()
            raise AssertionError(f"GraphiQL never subscribed; its result pane: {shown!r}") from None
        await page.wait_for_timeout(500)  # the server starts listening (the protocol confirms nothing)
        tickets = httpx.post(f"{gateway.base}/graphql", headers={"authorization": f"Bearer {token}"}, json={
            "query": '{ viewer { account(number: "ACC-100001") { tickets(first: 1) { edges { node { id number } } } } } }'
        }).json()
        ticket = tickets["data"]["viewer"]["account"]["tickets"]["edges"][0]["node"]
        reply = httpx.post(f"{gateway.base}/graphql", headers={"authorization": f"Bearer {token}"}, json={
            "query": "mutation($input: ReplyToTicketInput!) { replyToTicket(input: $input) { userErrors { code } } }",
            "variables": {"input": {"ticketId": ticket["id"], "body": "Seen live in GraphiQL"}},
        }).json()
        assert reply["data"]["replyToTicket"]["userErrors"] == [], reply
        event = await shown_result(page, "Seen live in GraphiQL")
        assert event["data"]["ticketUpdated"]["ticket"]["number"] == ticket["number"]
        traffic.assert_clean()
        assert any(url.startswith("ws://") for url in traffic.requested), traffic.requested
