"""GraphiQL, served by the gateway itself: no CDN, so it works offline and behind a strict
Content-Security-Policy.

Its files come from npm at setup, pinned with their hashes in ``assets/package-lock.json``:
``make graphiql-assets`` runs ``npm ci`` in ``assets/``, then ``python -m linkgate.graphiql
assets linkgate/graphiql_assets``, which copies the few files the page loads (``ASSETS``) as
``<package>@<version>/<path>``, and the page's own ``assets/graphiql-start.js`` under a name
carrying its digest, with a ``manifest.json`` written last. Every served name changes with
its content, so browsers may keep each file for a year. Without the folder the page says in
one line how to install it (503), never a blank page.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Receive, Scope, Send

from linkgate.settings import Settings

PREFIX = "/graphiql"
ASSETS_DIR = Path(__file__).with_name("graphiql_assets")
MANIFEST = "manifest.json"
START_SCRIPT = "graphiql-start.js"  # in the npm folder (assets/), beside package.json
INSTALL_HINT = (
    "GraphiQL's files are not installed on this server: run `make graphiql-assets` "
    "(npm ci) in the repository, then reload. The API on /graphql works without them."
)
IMMUTABLE = "public, max-age=31536000, immutable"
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
}


@dataclass(frozen=True)
class Asset:
    """One file the page loads: ``path`` inside the npm ``package``."""

    package: str
    path: str

    def served_as(self, version: str) -> str:
        return f"{self.package}@{version}/{self.path}"


# In load order. React 18 and GraphiQL 4 are the last with UMD builds (no bundler needed);
# graphiql.min.js bundles @graphiql/react, graphql and graphql-ws (subscriptions).
SCRIPTS = (
    Asset("react", "umd/react.production.min.js"),
    Asset("react-dom", "umd/react-dom.production.min.js"),
    Asset("graphiql", "graphiql.min.js"),
    Asset("@graphiql/plugin-explorer", "dist/index.umd.js"),
)
STYLES = (
    Asset("graphiql", "graphiql.min.css"),
    Asset("@graphiql/plugin-explorer", "dist/style.css"),
)
ASSETS = SCRIPTS + STYLES

# 'self' only: GraphiQL needs no eval, no inline script or style element (the browser test
# fails on any violation); its CSS carries fonts and icons as data: URLs. In CSP3 'self' also
# allows ws(s):// to the page's own host and port, for subscriptions.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))


# --- the page ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Installed:
    """What ``manifest.json`` says was installed, every file of it present."""

    packages: dict[str, str]
    start: str  # the served name of graphiql-start.js

    def url(self, asset: Asset) -> str:
        return f"{PREFIX}/{asset.served_as(self.packages[asset.package])}"


def installed(directory: Path | None = None) -> Installed | None:
    """The complete install in ``directory`` (``ASSETS_DIR``), or None (missing, partial,
    unreadable). Read on every page load: installing while the server runs needs no restart."""
    directory = ASSETS_DIR if directory is None else directory
    try:
        manifest: Any = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        found = Installed(dict(manifest["packages"]), str(manifest["start"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    names = [found.start, *(asset.served_as(str(found.packages.get(asset.package))) for asset in ASSETS)]
    if not all((directory / name).is_file() for name in names):
        return None
    return found


def _page_headers() -> dict[str, str]:
    return {
        "content-security-policy": CONTENT_SECURITY_POLICY,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",  # the file names inside change with every upgrade
    }


def graphiql_page(settings: Settings) -> HTMLResponse:
    """The page ``GET /graphql`` answers a browser with: GraphiQL and its explorer plugin,
    every file from this server."""
    found = installed()
    if found is None:
        return HTMLResponse(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            "<title>GraphiQL is not installed</title></head>"
            f"<body><p>{html.escape(INSTALL_HINT)}</p></body></html>",
            status_code=503, headers=_page_headers(),
        )
    styles = "".join(f'<link rel="stylesheet" href="{html.escape(found.url(asset))}">' for asset in STYLES)
    scripts = "".join(f'<script src="{html.escape(found.url(asset))}" defer></script>' for asset in SCRIPTS)
    start = html.escape(f"{PREFIX}/{found.start}")
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # data: icon: no request for /favicon.ico (a 404 in the console)
        f'<title>Linkgate · GraphiQL</title><link rel="icon" href="data:,">{styles}{scripts}'
        f'<script src="{start}" defer></script></head>'
        '<body><div id="graphiql">Loading GraphiQL…</div>'
        "<noscript>GraphiQL needs JavaScript.</noscript></body></html>"
    )
    return HTMLResponse(page, headers=_page_headers())


# --- the files ---------------------------------------------------------------------------

class AssetFiles(StaticFiles):
    """Starlette's StaticFiles (which refuses any path outside its folder) with the right
    content types, a year of caching and ``nosniff``; 503 with the install hint while the
    folder is missing, where StaticFiles would fail with a 500."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not os.path.isdir(str(self.directory)):
            await PlainTextResponse(INSTALL_HINT, status_code=503)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except OSError:  # e.g. a symlink loop: not a file we serve
            raise HTTPException(status_code=404) from None

    def file_response(
        self, full_path: os.PathLike[str] | str, stat_result: os.stat_result, scope: Scope,
        status_code: int = 200,
    ) -> Response:
        suffix = os.path.splitext(str(full_path))[1].lower()
        response = FileResponse(
            full_path, status_code=status_code, stat_result=stat_result,
            media_type=_MEDIA_TYPES.get(suffix, "text/plain; charset=utf-8"),
            headers={"cache-control": IMMUTABLE, "x-content-type-options": "nosniff"},
        )
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response


def graphiql_routes(settings: Settings) -> list[BaseRoute]:
    """GraphiQL's files under ``/graphiql/``; none when GraphiQL is off."""
    if not settings.graphiql:
        return []
    return [Mount(PREFIX, app=AssetFiles(ASSETS_DIR))]


# --- installing: python -m linkgate.graphiql NPM_FOLDER DESTINATION ----------------------

def collect(npm_folder: Path, destination: Path) -> Installed:
    """Copies ``ASSETS`` (and each package's licence) out of ``npm ci``'s install in
    ``npm_folder``, and its ``graphiql-start.js``, into ``destination``, replacing it whole: a
    server reading it meanwhile sees the old set, the new one or for an instant none (503),
    never half of each."""
    node_modules = npm_folder / "node_modules"
    packages: dict[str, str] = {}
    for package in dict.fromkeys(asset.package for asset in ASSETS):
        try:
            meta = json.loads((node_modules / package / "package.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise SystemExit(f"{package} is not installed in {node_modules} ({error}): run `npm ci` in {npm_folder}") from None
        packages[package] = str(meta["version"])
    script = (npm_folder / START_SCRIPT).read_bytes()
    result = Installed(packages, f"graphiql-start-{hashlib.sha256(script).hexdigest()[:16]}.js")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        for asset in ASSETS:
            target = staging / asset.served_as(packages[asset.package])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(node_modules / asset.package / asset.path, target)
        for package, version in packages.items():
            licence = node_modules / package / "LICENSE"
            if licence.is_file():
                shutil.copyfile(licence, staging / f"{package}@{version}" / "LICENSE")
        (staging / result.start).write_bytes(script)
        manifest = {"packages": packages, "start": result.start}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp's 0700 would keep another user (a container's) out
        if destination.exists():
            retired = destination.with_name(f".{destination.name}-old")
            shutil.rmtree(retired, ignore_errors=True)
            destination.rename(retired)
            shutil.rmtree(retired)
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m linkgate.graphiql NPM_FOLDER DESTINATION", file=sys.stderr)
        return 2
    result = collect(Path(argv[0]), Path(argv[1]))
    print("GraphiQL files:", ", ".join(f"{name}@{version}" for name, version in result.packages.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
