"""What logs, metrics and traces cost per request: the same small signed-in query through the
real app, in process, with each kind of observation on and off, measured side by side.

    .venv/bin/python -m bench.observability                 # temporary SQLite, ~1 min
    .venv/bin/python -m bench.observability --requests 3000

Variants, run in turns (A B C D, A B C D, …) so that a noisy machine slows all alike:

- ``quiet``: log level WARNING (no access line), metrics recorded, no tracing: the floor;
- ``logs``: the access line at INFO, JSON, written to a file (what production does);
- ``logs+traces``: as ``logs``, with OpenTelemetry to an in-memory exporter;
- ``logs+scrape``: as ``logs``, and a /metrics scrape every 100 requests.

The figure is ``time.process_time`` per request: the whole request path's CPU in this
process. Printed as medians per variant and as ratios to ``quiet``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import secrets
import statistics
import tempfile
import time

from bench.dataset import asgi_client, temporary_database
from linkgate.app import create_app
from linkgate.demo import DEMO_PASSWORD, seed_demo
from linkgate.logs import logging_config
from linkgate.migrations import upgrade_database
from linkgate.settings import Settings
from linkgate.tracing import Tracing
from models.database import create_engine, create_session_factory

HEADER = "query Header { viewer { user { email } } }"
LOGIN = 'mutation { login(input: {email: "olivia@northwind.example", password: "%s"}) { token } }'


def _log_to(path: str, level: str) -> None:
    config = logging_config("json", level)  # type: ignore[arg-type]
    config["handlers"]["stderr"] = {
        "class": "logging.FileHandler", "filename": path, "formatter": "json", "filters": ["request_id"],
    }
    logging.config.dictConfig(config)


async def _measure(url: str, rounds: int, per_round: int) -> dict[str, list[float]]:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    settings = Settings(database_url=url, secret_key=secrets.token_urlsafe(48))
    engine = create_engine(url)
    async with create_session_factory(engine)() as session:
        await seed_demo(session)
        await session.commit()
    exporter = InMemorySpanExporter()
    apps = {
        "quiet": create_app(settings, engine=engine),
        "logs": create_app(settings, engine=engine),
        "logs+traces": create_app(settings, engine=engine, tracing=Tracing(SimpleSpanProcessor(exporter))),
        "logs+scrape": create_app(settings, engine=engine),
    }
    clients = {name: asgi_client(app) for name, app in apps.items()}
    token = (await clients["quiet"].post("/graphql", json={"query": LOGIN % DEMO_PASSWORD})).json()["data"]["login"]["token"]
    headers = {"authorization": f"Bearer {token}"}
    log_file = tempfile.NamedTemporaryFile(prefix="linkgate-bench-log-", suffix=".jsonl")
    per_request: dict[str, list[float]] = {name: [] for name in apps}
    for round_number in range(rounds + 1):  # round 0 warms every app up and is not counted
        for name, client in clients.items():
            _log_to(log_file.name, "WARNING" if name == "quiet" else "INFO")
            started = time.process_time()
            for index in range(per_round):
                response = await client.post("/graphql", json={"query": HEADER}, headers=headers)
                assert response.status_code == 200, response.text
                if name == "logs+scrape" and index % 100 == 99:
                    assert (await client.get("/metrics")).status_code == 200
            if round_number:
                per_request[name].append((time.process_time() - started) / per_round * 1000)
            exporter.clear()
    for client in clients.values():
        await client.aclose()
    await engine.dispose()
    return per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per variant, in all")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with temporary_database(None) as url:
        upgrade_database(url)
        results = asyncio.run(_measure(url, args.rounds, max(1, args.requests // args.rounds)))
    logging.disable(logging.CRITICAL)
    floor = statistics.median(results["quiet"])
    print(f"{'variant':<14} {'CPU ms/request (median of rounds)':>34} {'vs quiet':>9}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:<14} {median:>34.3f} {median / floor:>8.2f}x")


if __name__ == "__main__":
    main()
