"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium`` driven by Playwright
(no browser is ever downloaded: ``playwright install`` is never run). Every request and
WebSocket off the allowed origins is refused and recorded, and so is every
Content-Security-Policy violation and uncaught page error, for the tests to assert on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import BrowserContext, Page, Route, WebSocketRoute, async_playwright

from tests.servers import LINKGATE, Server, clean_environment, running_server

CHROMIUM = Path(os.environ.get("LINKGATE_TEST_CHROMIUM", "/usr/bin/chromium"))
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium chromium-driver (CI installs it)",
)

_REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportViolation(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


def origin_of(url: str) -> str:
    """``scheme://host:port``, with ws/wss counted as http/https (a socket to the page's own
    server is same-origin traffic)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


def _bytes(message: str | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.encode()


@dataclass
class Traffic:
    """What the page asked for, what was refused, and what went wrong inside it."""

    allowed: frozenset[str]
    requested: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    socket_messages: list[str | bytes] = field(default_factory=list)  # what the page sent on sockets
    socket_replies: list[str | bytes] = field(default_factory=list)  # what the server sent back

    def subscribed(self) -> bool:
        return any(b'"subscribe"' in _bytes(message) for message in self.socket_messages)

    def acknowledged(self) -> bool:
        """The server accepted a socket's connection_init (its token was good then)."""
        return any(b'"connection_ack"' in _bytes(message) for message in self.socket_replies)

    def assert_clean(self) -> None:
        assert self.requested, "the page requested nothing"
        assert not self.refused, f"requests off {sorted(self.allowed)}: {self.refused}"
        assert not self.violations, f"Content-Security-Policy violations: {self.violations}"
        assert not self.errors, f"uncaught errors in the page: {self.errors}"


async def _watch(context: BrowserContext, traffic: Traffic) -> None:
    async def gate(route: Route) -> None:
        url = route.request.url
        traffic.requested.append(url)
        if origin_of(url) in traffic.allowed:
            await route.continue_()
        else:
            traffic.refused.append(url)
            await route.abort("blockedbyclient")

    async def gate_socket(socket: WebSocketRoute) -> None:
        traffic.requested.append(socket.url)
        if origin_of(socket.url) in traffic.allowed:
            server = socket.connect_to_server()

            def from_page(message: str | bytes) -> None:
                traffic.socket_messages.append(message)
                server.send(message)

            def from_server(message: str | bytes) -> None:
                traffic.socket_replies.append(message)
                socket.send(message)

            socket.on_message(from_page)
            server.on_message(from_server)
        else:
            traffic.refused.append(socket.url)
            await socket.close(code=1008, reason="off the allowed origins")

    await context.route("**/*", gate)
    await context.route_web_socket(re.compile(".*"), gate_socket)
    def report_violation(violation: str) -> None:
        traffic.violations.append(violation)

    await context.expose_function("reportViolation", report_violation)
    await context.add_init_script(_REPORT_VIOLATIONS)


async def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    """Waits until ``check()`` holds (for what the page reports to the test asynchronously)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def browser_page(*origins: str) -> AsyncIterator[tuple[Page, Traffic]]:
    """A fresh page in headless Chromium that may reach ``origins`` (``http://host:port``)
    and nothing else."""
    traffic = Traffic(frozenset(origins))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900},
                                                service_workers="block")
            await _watch(context, traffic)
            page = await context.new_page()
            page.on("pageerror", lambda error: traffic.errors.append(str(error)))
            yield page, traffic
        finally:
            await browser.close()


@contextlib.contextmanager
def demo_gateway(folder: Path, **settings: str) -> Iterator[Server]:
    """``linkgate serve --demo`` as a newcomer runs it (migrated, seeded SQLite in
    ``folder``), with ``settings`` (``LINKGATE_*``) in its environment."""
    with running_server([*LINKGATE, "serve", "--demo"], environment=clean_environment(**settings),
                        cwd=folder) as server:
        yield server
    assert "Traceback" not in server.output, server.output[-3000:]
