"""Real server processes for the tests that need one: started, awaited, always stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests import log_secrets
from tests.conftest import GraphQLClient

LINKGATE = [sys.executable, "-m", "linkgate"]
UVICORN = [sys.executable, "-m", "uvicorn", "linkgate.asgi:app", "--log-level", "warning"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any ``LINKGATE_*`` of its own, plus ``settings``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LINKGATE_")}
    environment.update(settings)
    return environment


def run_cli(args: list[str], cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """``linkgate ARGS`` as a newcomer runs it: a subprocess in ``cwd``, only ``settings``."""
    return subprocess.run(
        LINKGATE + args, cwd=cwd, env=clean_environment(**settings), capture_output=True,
        text=True, timeout=120, stdin=subprocess.DEVNULL,  # no terminal, as in a container
    )


@dataclass
class Server:
    base: str
    process: subprocess.Popen[str]
    output: str = ""  # everything it printed, once stopped


@contextlib.contextmanager
def running_server(
    command: list[str], *, environment: dict[str, str], cwd: Path | None = None,
    ready_path: str = "/readyz", timeout: float = 90,
) -> Iterator[Server]:
    """Starts ``command`` plus ``--port``, waits for ``ready_path`` to answer 200; stops it
    on the way out and keeps what it printed in ``Server.output``."""
    port = free_port()
    # A file, not a pipe: nobody reads a pipe while the test runs, and a full one would
    # block the server's next log line (and with it the server).
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(
        [*command, "--port", str(port)], cwd=cwd, env=environment,
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{server.base}{ready_path}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, f"the server exited early: {_read(log)}"
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)
        server.output = _read(log)
        log.close()
        if log_secrets.RUN_LOG is not None:  # searched for secrets at the end of the run
            log_secrets.RUN_LOG.add_output([server.output])


def _read(log: IO[str]) -> str:
    log.flush()
    log.seek(0)
    return log.read()


@contextlib.asynccontextmanager
async def clients_of(bases: list[str], engine: AsyncEngine,
                     timeout: float = 120) -> AsyncIterator[list[GraphQLClient]]:
    """A GraphQL client for each running server (``running_server``'s ``base``), closed after."""
    https = [httpx.AsyncClient(base_url=base, timeout=timeout) for base in bases]
    try:
        yield [GraphQLClient(http, engine) for http in https]
    finally:
        for http in https:
            await http.aclose()
