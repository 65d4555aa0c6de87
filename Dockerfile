# Linkgate gateway image. Build: docker build -t linkgate .   (compose.yaml builds it for you)
#
# Base images are pinned by tag, not by digest: digests could not be fetched where this file
# was written. Pin them (FROM python:3.11-slim-bookworm@sha256:…) in your own registry/CI.
#
# The image never migrates on start: its CMD is `serve --no-upgrade`, which refuses to start
# (exit 2) while the database is behind. Run `linkgate db upgrade` once per release, as a
# one-shot container (compose.yaml's `migrate` service).

# --- graphiql: GraphiQL's browser files from npm, as package-lock.json pins them ----------
# (linkgate/graphiql.py serves them under /graphiql/; nothing of Node reaches the image)
FROM node:20-bookworm-slim AS graphiql

WORKDIR /web
COPY assets/package.json assets/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

# --- builder: compilers for any dependency without a wheel; the venv in /opt/venv ----------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from the lock alone: this layer is cached until the lock changes.
# (When the lock carries hashes, pip checks every one.)
COPY requirements.lock ./
RUN pip install -r requirements.lock

# Then the project itself, without resolving anything again.
COPY pyproject.toml README.md ./
COPY models ./models
COPY auth ./auth
COPY resolvers ./resolvers
COPY schema ./schema
COPY linkgate ./linkgate
# GraphiQL's files go into the package (package data) before it is installed; then the
# installed package (-I: not this folder's copy) must find them.
COPY --from=graphiql /web/node_modules ./assets/node_modules
COPY assets/graphiql-start.js ./assets/
RUN python -m linkgate.graphiql assets linkgate/graphiql_assets \
    && pip install --no-deps . \
    && linkgate --help > /dev/null \
    && python -I -c "import linkgate.graphiql as g, sys; sys.exit(g.installed() is None)"

# --- runtime: the venv, a non-root user, nothing else ---------------------------------------
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="linkgate" \
      org.opencontainers.image.description="GraphQL gateway for the linked-account dashboard"

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1

RUN groupadd --system --gid 10001 linkgate \
    && useradd --system --uid 10001 --gid linkgate --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin linkgate \
    && install -d -o linkgate -g linkgate -m 0750 /app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

EXPOSE 8000

# Ready = the database answers (GET /readyz is 200, 503 otherwise). No curl in slim images:
# urlopen raises on a non-2xx answer or a refused connection, so python exits non-zero.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]

# More than one worker per container needs PROMETHEUS_MULTIPROC_DIR (see compose.yaml).
CMD ["linkgate", "serve", "--no-upgrade", "--host", "0.0.0.0", "--port", "8000", "--workers", "1"]
