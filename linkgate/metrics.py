"""Prometheus metrics: what ``ObserveRequests`` reports, counted, and ``GET /metrics``.

Metrics (all ``linkgate_``; every label has a bounded set of values)
----------------------------------------------------------------------

``linkgate_http_requests_total{method, route, status}`` (counter)
    Every HTTP request once answered. ``route`` is one of the app's fixed routes
    (``/graphql``, ``/healthz``, ``/readyz``, ``/metrics``, ``/invoices/download``) or
    ``other``: never the raw path, which is whatever a client chose to send. ``method`` is
    one of the usual HTTP methods or ``other``; ``status`` is the status code answered.
``linkgate_http_request_seconds{route}`` (histogram)
    Their durations, from the first byte in to the last byte out.
``linkgate_graphql_operations_total{operation, outcome}`` (counter)
    One per GraphQL operation that ran: a batch counts each of its operations. ``operation``
    is the operation's name (``_anonymous`` if it has none, ``_unknown`` if the document did
    not parse or named nothing runnable); ``outcome`` is ``ok``, ``partial`` (data and
    errors) or ``error``, the request's, which for a batch is the worst of its results.
    Requests refused before GraphQL ran (not JSON, too large…) are not operations: they are
    in ``linkgate_http_requests_total`` and ``linkgate_graphql_errors_total``.
``linkgate_graphql_operation_seconds{operation, outcome}`` (histogram, 1 ms … 30 s)
    Their durations. Each operation of a batch is given the whole request's duration (the
    operations of a batch run concurrently; nothing times them one by one).
``linkgate_graphql_errors_total{code}`` (counter)
    Every error in an answer, by ``extensions.code`` (``UNAUTHENTICATED``, ``RATE_LIMITED``…),
    refusals outside GraphQL included.
``linkgate_sign_ins_throttled_total{field}`` (counter)
    ``RATE_LIMITED`` answers of the fields that check a password or a second factor against
    the sign-in throttle (``auth.throttle``, kind ``login``): ``login`` (the password and its
    second factor), ``changePassword``, ``confirmTwoFactor``, ``disableTwoFactor``,
    ``regenerateRecoveryCodes``. (``linkAccount`` shares that budget when it is given owner
    credentials, but its ``RATE_LIMITED`` may come from the link-proof throttle instead, so it
    is only in ``linkgate_graphql_errors_total``.) The field is the one the document names:
    an aliased ``x: login(…)`` counts as ``login``.
``linkgate_db_pool_connections_in_use`` (gauge)
    Connections checked out of this process's pool (the sum over the workers with several).
    Absent when the engine's pool does not count them (``NullPool``, ``StaticPool``).
``linkgate_live_subscriptions`` (gauge)
    Subscriptions open on this process (each reads its own queue of events).
``linkgate_live_sockets`` (gauge)
    Signed-in graphql-transport-ws sockets open on this process.
``linkgate_live_tasks`` (gauge)
    asyncio tasks those sockets run: a writer and a session watchdog each, one per operation.
``linkgate_live_listening`` (gauge)
    1 while this process's ``LISTEN`` connection to PostgreSQL is up, 0 while it reconnects;
    absent on SQLite. ``linkgate_live_listen_reconnects`` counts its reconnections.
    (These describe the process that answers the scrape, also with several workers.)
``linkgate_access_cache_hits_total``, ``linkgate_access_cache_misses_total`` (counters), ``linkgate_access_cache_users`` (gauge)
    Requests whose caller's rights this process reused, and those that read them (a user's
    first request, or any change to anyone's rights since); users kept. Per process, like
    the live gauges. See ``auth/access_cache.py``.
``linkgate_outbox_unsent`` (gauge)
    Notifications still to be sent (``sent_at`` null, fewer than
    ``LINKGATE_NOTIFICATION_MAX_ATTEMPTS`` attempts).
``linkgate_outbox_failed`` (gauge)
    Notifications given up on (unsent after the maximum attempts): they stay in the outbox.
``linkgate_outbox_oldest_unsent_age_seconds`` (gauge)
    Age of the oldest notification still to be sent; 0 when there is none.

The three outbox gauges are read from the database when scraped, with one statement under a
time limit (``OUTBOX_QUERY_SECONDS``). If it fails they are left out of that scrape (alert on
their absence) and a warning is logged once until it works again; the scrape never fails for
it. They describe the one database every replica shares: aggregate them across replicas with
``max``, not ``sum``.

Counters and histograms also have the ``_created`` series prometheus-client adds to them in
a single process.

Cardinality
-----------
Operation names come from clients: each process keeps the first ``MAX_OPERATION_LABELS``
names it sees and counts any further ones as ``_other``. Error codes are made by the server,
but are capped the same way (``MAX_ERROR_CODE_LABELS``). With several workers each one has its
own cap, so a scrape can hold up to workers × cap names.

Several workers (``uvicorn --workers N``)
-----------------------------------------
When ``PROMETHEUS_MULTIPROC_DIR`` is set (in the environment the server starts with, before
Python starts: prometheus-client decides at import), prometheus-client's multiprocess mode is
used: each worker writes its values to files there, and whichever worker answers a scrape
reads them all (a new ``CollectorRegistry`` with a ``MultiProcessCollector`` per scrape). The
directory must be emptied before the server starts (compose mounts a tmpfs there), or the
counts of a previous run carry on. The pool gauge is a ``livesum`` gauge, kept up to date by
the pool's checkout and checkin events. prometheus-client wants ``mark_process_dead(pid)``
called for each worker that ends (its docs: from gunicorn's ``child_exit`` hook), or a dead
worker's last value stays in the sum; uvicorn has no such hook, and its workers end by
re-raising SIGTERM, so no ``atexit`` runs either. So every scrape does it for the files of
workers that are no longer running (stopped, crashed or killed; uvicorn starts new ones), and
``Metrics.close`` does it for its own worker at the end of the app's lifespan. The outbox
gauges are computed by the worker that answers the scrape only, so they are never counted
twice.

Access
------
With ``LINKGATE_METRICS_TOKEN`` set, ``/metrics`` answers only ``Authorization: Bearer
<token>`` (else 401, in the shape of the other errors). Without it ``/metrics`` is open to
anyone who can reach the server: then keep it reachable only from the internal network (the
compose proxy answers 404 for it).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from linkgate.observation import RequestObservation, current_observation, method_label, route_label
from linkgate.settings import ConfigurationError, Settings
from resolvers.delivery import outbox_backlog

logger = logging.getLogger("linkgate.metrics")

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


MAX_OPERATION_LABELS = 200
MAX_ERROR_CODE_LABELS = 50
OTHER_LABEL = "_other"

# The fields whose RATE_LIMITED can only be the sign-in throttle's (see the module docstring).
SIGN_IN_FIELDS = frozenset({
    "login", "changePassword", "confirmTwoFactor", "disableTwoFactor", "regenerateRecoveryCodes",
})

# 1 ms … 30 s (the request time limit's default).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0)

OUTBOX_QUERY_SECONDS = 2.0

_UNAUTHORIZED_MESSAGE = "Send the metrics token: Authorization: Bearer <token>."


class _Labels:
    """The first ``limit`` values seen of a label; any later one is ``_other``."""

    __slots__ = ("limit", "seen")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER_LABEL


class _Instruments:
    """The counters, histograms and (with several workers) the pool gauge of one process
    (several workers) or of one ``Metrics`` (one process: tests build many apps)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "linkgate_http_requests", "HTTP requests answered.",
            ["method", "route", "status"], registry=registry,
        )
        self.request_seconds = Histogram(
            "linkgate_http_request_seconds", "Time to answer an HTTP request.",
            ["route"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.operations = Counter(
            "linkgate_graphql_operations", "GraphQL operations run (each of a batch).",
            ["operation", "outcome"], registry=registry,
        )
        self.operation_seconds = Histogram(
            "linkgate_graphql_operation_seconds",
            "Duration of the request that ran a GraphQL operation.",
            ["operation", "outcome"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.errors = Counter(
            "linkgate_graphql_errors", "Errors answered, by extensions.code.",
            ["code"], registry=registry,
        )
        self.throttled = Counter(
            "linkgate_sign_ins_throttled",
            "Sign-in attempts refused by the sign-in throttle (RATE_LIMITED).",
            ["field"], registry=registry,
        )
        self.operation_label = _Labels(MAX_OPERATION_LABELS)
        self.code_label = _Labels(MAX_ERROR_CODE_LABELS)
        # Label children by label values: ``labels()`` takes a lock and builds a key each time.
        self._children: dict[tuple[Any, ...], Any] = {}
        self._pool_gauge: Gauge | None = None

    def child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def pool_gauge(self) -> Gauge:
        """The livesum gauge of pool connections in use (several workers only)."""
        if self._pool_gauge is None:
            self._pool_gauge = Gauge(
                "linkgate_db_pool_connections_in_use",
                "Database connections checked out of the pool.",
                multiprocess_mode="livesum", registry=None,
            )
        return self._pool_gauge


# Several workers: one set of instruments per process (their values are per-process files).
_process_instruments: _Instruments | None = None
_tracked_engines: weakref.WeakSet[Any] = weakref.WeakSet()


def _multiprocess_directory() -> str | None:
    directory = os.environ.get(MULTIPROC_DIR_VARIABLE) or None
    if directory is None:
        return None
    if prometheus_values.ValueClass is prometheus_values.MutexValue:
        # Set after prometheus-client was imported: its values live in memory, not in files.
        logger.warning("%s was set after prometheus_client was imported: metrics are this "
                       "worker's only", MULTIPROC_DIR_VARIABLE)
        return None
    if not os.path.isdir(directory):
        raise ConfigurationError(
            f"{MULTIPROC_DIR_VARIABLE}: {directory!r} is not a directory (it must exist, "
            "empty, before the server starts)"
        )
    return directory


class _Families:
    """A collector of some sources' metrics plus families computed for this scrape."""

    def __init__(self, sources: Iterable[Any], families: Iterable[Metric]) -> None:
        self.sources = list(sources)
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()
        yield from self.families


class Metrics:
    """Counts what ``ObserveRequests`` reports and answers ``GET /metrics``."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        global _process_instruments
        self.settings = settings
        self.engine = engine
        token = settings.metrics_token
        if isinstance(token, SecretStr):
            token = token.get_secret_value()
        self._expected = f"Bearer {token}".encode() if token else None
        self._directory = _multiprocess_directory()
        self._registry: CollectorRegistry | None = None
        if self._directory is None:
            self._registry = CollectorRegistry(auto_describe=True)
            self.instruments = _Instruments(self._registry)
        else:
            if _process_instruments is None:
                _process_instruments = _Instruments(None)
            self.instruments = _process_instruments
            if self._pool() is not None:
                _track_pool(engine, self.instruments.pool_gauge())
        self._outbox_failing = False
        self._observe_failed = False

    def close(self) -> None:
        """At the end of the app's lifespan: with several workers, this worker's live gauge
        leaves the sum at once (a scrape would drop it anyway once the process is gone)."""
        if self._directory is not None:
            try:
                mark_process_dead(os.getpid(), self._directory)
            except OSError:
                pass

    # --- every request ----------------------------------------------------------------------

    def observe_request(self, observation: RequestObservation) -> None:
        """Counts one answered request: cheap (a few dictionary lookups and increments), and
        never raises."""
        try:
            self._observe(observation)
        except Exception:
            if not self._observe_failed:  # once: this runs on every request
                self._observe_failed = True
                logger.exception("could not record request metrics")

    def _observe(self, observation: RequestObservation) -> None:
        instruments = self.instruments
        seconds = observation.seconds
        path = observation.path
        route = route_label(path)
        method = method_label(observation.method)
        instruments.child(instruments.requests, method, route, str(observation.status)).inc()
        instruments.child(instruments.request_seconds, route).observe(seconds)
        if observation.operations:
            outcome = observation.outcome
            for name in observation.operations:
                operation = instruments.operation_label(name)
                instruments.child(instruments.operations, operation, outcome).inc()
                instruments.child(instruments.operation_seconds, operation, outcome).observe(seconds)
        for code, field in observation.errors:
            instruments.child(instruments.errors, instruments.code_label(code)).inc()
            if code == "RATE_LIMITED" and field in SIGN_IN_FIELDS:
                instruments.child(instruments.throttled, field).inc()
        if self._directory is not None:
            in_use = self._pool()
            if in_use is not None:
                instruments.pool_gauge().set(in_use)

    # --- GET /metrics -----------------------------------------------------------------------

    async def endpoint(self, request: Request) -> Response:
        if not self._authorized(request):
            observation = current_observation()
            if observation is not None:
                observation.add_error_code("UNAUTHENTICATED")
            return JSONResponse(
                {"errors": [{"message": _UNAUTHORIZED_MESSAGE,
                             "extensions": {"code": "UNAUTHENTICATED"}}]},
                status_code=401, headers={"www-authenticate": "Bearer"},
            )
        families = await self._outbox_families()
        families.extend(_live_families(getattr(request.app.state, "live", None)))
        families.extend(_access_cache_families(getattr(request.app.state, "access_cache", None)))
        in_use = self._pool()
        if self._directory is None:
            if in_use is not None:
                families.append(GaugeMetricFamily(
                    "linkgate_db_pool_connections_in_use",
                    "Database connections checked out of the pool.", value=in_use,
                ))
            sources: list[Any] = [self._registry]
        else:
            if in_use is not None:
                self.instruments.pool_gauge().set(in_use)
            _forget_dead_workers(self._directory)
            # A new registry per scrape, holding only the collector of the workers' files.
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self._directory)
            sources = [registry]
        # Off the event loop: with many label values (or many workers' files to merge) a
        # scrape takes a few hundred milliseconds that requests should not wait for.
        body = await asyncio.to_thread(generate_latest, _Families(sources, families))  # type: ignore[arg-type]
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"})

    def _authorized(self, request: Request) -> bool:
        if self._expected is None:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, token = given.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Headers arrive as latin-1; compare bytes, in constant time.
        return hmac.compare_digest(f"Bearer {token.strip()}".encode("latin-1", "replace"),
                                   self._expected)

    def _pool(self) -> int | None:
        """Connections checked out of this process's pool, if the pool counts them."""
        checkedout = getattr(self.engine.sync_engine.pool, "checkedout", None)
        if not callable(checkedout):
            return None
        try:
            return int(checkedout())
        except Exception:
            return None

    async def _outbox_families(self) -> list[Metric]:
        try:
            async with asyncio.timeout(OUTBOX_QUERY_SECONDS):
                async with self.engine.connect() as connection:
                    backlog = await outbox_backlog(
                        connection, max_attempts=self.settings.notification_max_attempts
                    )
        except Exception as error:
            if not self._outbox_failing:
                self._outbox_failing = True
                logger.warning("could not read the outbox for /metrics (left out until it "
                               "works): %s: %s", type(error).__name__, error)
            return []
        if self._outbox_failing:
            self._outbox_failing = False
            logger.info("the outbox can be read for /metrics again")
        return [
            GaugeMetricFamily("linkgate_outbox_unsent", "Notifications still to be sent.",
                              value=backlog.unsent),
            GaugeMetricFamily("linkgate_outbox_failed",
                              "Notifications given up on after the maximum attempts.",
                              value=backlog.failed),
            GaugeMetricFamily("linkgate_outbox_oldest_unsent_age_seconds",
                              "Age of the oldest notification still to be sent (0: none).",
                              value=backlog.oldest_unsent_age_seconds),
        ]


# --- several workers ---------------------------------------------------------------------------

def _track_pool(engine: AsyncEngine, gauge: Gauge) -> None:
    """Keeps the livesum gauge current as connections come and go, once per engine: a worker
    whose requests are stuck waiting for connections still shows them in use. At checkin the
    connection is still counted by the pool (it is returned just after the event)."""
    sync_engine = engine.sync_engine
    if sync_engine in _tracked_engines:
        return
    _tracked_engines.add(sync_engine)

    def checked_out(*_: Any) -> None:
        try:
            gauge.set(sync_engine.pool.checkedout())  # type: ignore[attr-defined]
        except Exception:
            pass

    def checked_in(*_: Any) -> None:
        try:
            gauge.set(max(0, sync_engine.pool.checkedout() - 1))  # type: ignore[attr-defined]
        except Exception:
            pass

    event.listen(sync_engine, "checkout", checked_out)
    event.listen(sync_engine, "checkin", checked_in)


_DB_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def _forget_dead_workers(directory: str) -> None:
    """``mark_process_dead`` for the live gauges of workers that are gone (uvicorn has no
    hook for it, and a killed worker cannot do it itself)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    pids = {int(match.group(1)) for name in names if (match := _DB_FILE.fullmatch(name))}
    for pid in pids - {os.getpid()}:
        if not _running(pid):
            try:
                mark_process_dead(pid, directory)
            except OSError:
                pass


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return True
    return True



def _access_cache_families(cache: Any) -> list[Metric]:
    """How often this process reused a user's computed rights (``auth/access_cache.py``)."""
    if cache is None:
        return []
    return [
        CounterMetricFamily("linkgate_access_cache_hits", "Requests whose rights came from this process's cache.",
                            value=cache.hits),
        CounterMetricFamily("linkgate_access_cache_misses", "Requests whose rights were read from the database "
                            "(first request of a user, or the rights version moved).", value=cache.misses),
        GaugeMetricFamily("linkgate_access_cache_users", "Users whose rights this process keeps.",
                          value=len(cache)),
    ]


def _live_families(live: Any) -> list[Metric]:
    """Subscriptions, sockets and the LISTEN connection of this process (``linkgate.live``)."""
    if live is None:
        return []
    families: list[Metric] = [
        GaugeMetricFamily("linkgate_live_subscriptions", "Subscriptions open on this process.",
                          value=len(live.hub.streams)),
        GaugeMetricFamily("linkgate_live_sockets", "Signed-in subscription sockets open on this process.",
                          value=sum(len(sockets) for sockets in live.sockets_by_user.values())),
        GaugeMetricFamily("linkgate_live_tasks", "Tasks the open sockets run (writers, watchdogs, operations).",
                          value=live.tasks()),
    ]
    if live.listener is not None:
        families.append(GaugeMetricFamily(
            "linkgate_live_listening", "1 while the LISTEN connection to PostgreSQL is up.",
            value=1 if live.listener.connected.is_set() else 0))
        families.append(GaugeMetricFamily(
            "linkgate_live_listen_reconnects", "Times the LISTEN connection was opened again.",
            value=live.listener.reconnects))
    return families
