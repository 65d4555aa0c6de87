"""The declared dependencies, the two lock files and the installed virtualenv agree.

* every third-party module the code imports belongs to a distribution pyproject.toml declares
  (the gateway's packages: in [project.dependencies]; tests/ and bench/: there or in the
  ``test`` extra, which is what ``make test`` and ``make bench`` install);
* every requirement in pyproject.toml is met by the version requirements-test.lock pins,
  requirements.lock (the image's) pins the same versions, and each lock holds exactly what its
  requirements pull in (no test tool in the image, nothing left over after a removal);
* what is installed here is what the lock pins: a virtualenv left behind by a lock change fails
  here instead of passing on versions CI will not have (``make test`` reinstalls it).

No network: the imports are read with ``ast``, the distributions with ``importlib.metadata``.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = ("models", "auth", "resolvers", "schema", "linkgate")
OWN_PACKAGES = frozenset({*RUNTIME_PACKAGES, "tests", "bench"})
# Modules that may be imported without being declared, each with its reason. Empty: bench/
# imports only what the dependencies and the `test` extra hold (httpx comes from the extra,
# which `make bench` installs).
UNDECLARED_ALLOWED: dict[str, str] = {}

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(extra: str | None = None) -> list[Requirement]:
    project = _pyproject()["project"]
    texts = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def _names(requirements: list[Requirement]) -> set[str]:
    return {canonicalize_name(requirement.name) for requirement in requirements}


def _pins(lock: str) -> dict[str, Version]:
    """``name==version`` lines of a pip requirements file (hash and comment lines skipped)."""
    pins: dict[str, Version] = {}
    for line in (ROOT / lock).read_text().splitlines():
        match = PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            assert name not in pins, f"{lock} pins {name} twice"
            pins[name] = Version(match.group(2))
    assert pins, f"{lock} pins nothing"
    return pins


def _imports(path: Path) -> Iterator[tuple[str, int, list[str]]]:
    """(module, line, candidate dotted names) for every absolute import in a file.

    ``from a.b import c`` gives the candidates ``a.b.c`` and ``a.b``: ``c`` may be a submodule,
    and in a namespace package (``opentelemetry``) the submodule says which distribution it is.
    """
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, [alias.name]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.module, node.lineno, [f"{node.module}.{alias.name}", node.module]


@functools.cache
def _third_party_imports(*folders: str) -> dict[str, list[str]]:
    """Imported dotted name -> where (``file:line``), for modules neither stdlib nor ours."""
    found: dict[str, list[str]] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            for module, line, candidates in _imports(path):
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in OWN_PACKAGES:
                    continue
                where = f"{path.relative_to(ROOT)}:{line}"
                for candidate in candidates:
                    found.setdefault(candidate, []).append(where)
    return found


@functools.cache
def _installed_modules() -> dict[str, frozenset[str]]:
    """Canonical distribution name -> the dotted modules and packages it installs."""
    modules: dict[str, set[str]] = {}
    for distribution in importlib.metadata.distributions():
        found = modules.setdefault(canonicalize_name(distribution.metadata["Name"]), set())
        for file in distribution.files or ():
            parts = file.parts
            if not parts or parts[0].endswith((".dist-info", ".egg-info", ".data")) or parts[0] in {"..", "bin"}:
                continue
            # a/b/c.py -> a, a.b, a.b.c; a/b/_c.cpython-311-x86_64-linux-gnu.so -> a, a.b, a.b._c
            found.update(".".join(parts[:length]) for length in range(1, len(parts)))
            found.add(".".join((*parts[:-1], parts[-1].split(".")[0])))
    return {name: frozenset(found) for name, found in modules.items()}


@functools.cache
def _top_level() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _owners(dotted: str) -> set[str]:
    """The distributions that install ``dotted``: those holding its longest installed prefix
    (``opentelemetry.sdk.trace`` -> opentelemetry-sdk, not every ``opentelemetry-*``)."""
    installed = _installed_modules()
    candidates = {canonicalize_name(name) for name in _top_level().get(dotted.split(".")[0], ())}
    parts = dotted.split(".")
    for length in range(len(parts), 0, -1):
        prefix = ".".join(parts[:length])
        owners = {name for name in candidates if prefix in installed.get(name, ())}
        if owners:
            return owners
    return candidates


def _undeclared(folders: tuple[str, ...], declared: set[str]) -> list[str]:
    """One line per undeclared distribution (or uninstalled module), with where it is imported."""
    top_level = _top_level()
    missing: dict[str, set[str]] = {}
    for dotted, places in _third_party_imports(*folders).items():
        top = dotted.split(".")[0]
        if top in UNDECLARED_ALLOWED:
            continue
        if top not in top_level:
            missing.setdefault(f"module {top!r}, which no installed distribution provides", set()).update(places)
            continue
        owners = _owners(dotted)
        if not owners & declared:
            missing.setdefault(f"{' or '.join(sorted(owners))} (for {top})", set()).update(places)
    return [
        f"{what}: imported at {', '.join(sorted(places)[:4])}{' …' if len(places) > 4 else ''}"
        for what, places in sorted(missing.items())
    ]


def test_the_gateway_declares_every_package_it_imports() -> None:
    undeclared = _undeclared(RUNTIME_PACKAGES, _names(_requirements()))
    assert not undeclared, "add to [project.dependencies]:\n" + "\n".join(undeclared)


def test_the_tests_and_benchmarks_import_only_declared_packages() -> None:
    declared = _names(_requirements()) | _names(_requirements("test"))
    undeclared = _undeclared(("tests", "bench"), declared)
    assert not undeclared, "add to [project.dependencies] or the test extra:\n" + "\n".join(undeclared)


def test_the_import_scan_sees_what_it_must() -> None:
    """The scan is not vacuous: it finds the packages the code is known to use, by distribution."""
    imports = _third_party_imports(*RUNTIME_PACKAGES)
    owners = set().union(*(_owners(dotted) for dotted in imports))
    assert {"strawberry-graphql", "graphql-core", "sqlalchemy", "starlette", "cross-web"} <= owners
    assert not any(dotted.split(".")[0] in {"asyncio", "json", "models", "linkgate"} for dotted in imports)


@pytest.mark.parametrize("extra", [None, "test"])
def test_the_test_lock_meets_every_requirement(extra: str | None) -> None:
    pins = _pins("requirements-test.lock")
    unmet = [
        f"{requirement}: {'not in the lock' if canonicalize_name(requirement.name) not in pins else pins[canonicalize_name(requirement.name)]}"
        for requirement in _requirements(extra)
        if canonicalize_name(requirement.name) not in pins
        or not requirement.specifier.contains(pins[canonicalize_name(requirement.name)], prereleases=True)
    ]
    assert unmet == [], "run `make lock` after changing pyproject.toml"


def test_the_runtime_lock_holds_the_dependencies_at_the_test_lock_versions() -> None:
    runtime, test = _pins("requirements.lock"), _pins("requirements-test.lock")
    assert {name: version for name, version in runtime.items() if test.get(name) != version} == {}
    unmet = [
        str(requirement)
        for requirement in _requirements()
        if canonicalize_name(requirement.name) not in runtime
        or not requirement.specifier.contains(runtime[canonicalize_name(requirement.name)], prereleases=True)
    ]
    assert unmet == []


def _closure(requirements: list[Requirement]) -> set[str]:
    """The installed distributions ``requirements`` pull in, with their extras and markers
    evaluated for this interpreter (CPython 3.11 on Linux, like the locks)."""
    needed: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [requirement for requirement in requirements if not requirement.marker or requirement.marker.evaluate({"extra": ""})]
    while pending:
        requirement = pending.pop()
        name, extras = canonicalize_name(requirement.name), frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        needed.add(name)
        for text in importlib.metadata.requires(name) or ():
            dependency = Requirement(text)
            if not dependency.marker or any(dependency.marker.evaluate({"extra": extra}) for extra in extras | {""}):
                pending.append(dependency)
    return needed


def test_each_lock_holds_exactly_what_its_requirements_pull_in() -> None:
    """Nothing missing, nothing extra: the image gets no test tools, the test venv no leftovers.
    (Read from the installed metadata, which the last test checks is the locked versions.)"""
    runtime = _closure(_requirements())
    assert set(_pins("requirements.lock")) ^ runtime == set(), "requirements.lock is stale: run `make lock`"
    everything = _closure(_requirements() + _requirements("test"))
    assert set(_pins("requirements-test.lock")) ^ everything == set(), "requirements-test.lock is stale: run `make lock`"
    assert "pytest" not in runtime and "hypothesis" not in runtime


def test_strawberry_and_graphql_core_stop_before_their_next_minor_release() -> None:
    """The code subclasses and calls their internals: a new minor release is a change to review
    (raise the bound, `make lock`, run the tests), never one that `make lock` takes by itself."""
    pins = _pins("requirements-test.lock")
    for requirement in _requirements():
        name = canonicalize_name(requirement.name)
        if name in {"strawberry-graphql", "graphql-core"}:
            uppers = [Version(spec.version) for spec in requirement.specifier if spec.operator == "<"]
            assert len(uppers) == 1, f"{requirement} needs one upper bound"
            assert uppers[0].release[:2] == (pins[name].major, pins[name].minor + 1), (
                f"{requirement}: the upper bound is not the minor release after the locked {pins[name]}"
            )


def test_the_installed_packages_are_the_locked_versions() -> None:
    """Run under the virtualenv `make` builds: a stale .venv is rebuilt by `make test`."""
    wrong = {}
    for name, version in _pins("requirements-test.lock").items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            wrong[name] = f"locked {version}, not installed"
            continue
        if installed != version:
            wrong[name] = f"locked {version}, installed {installed}"
    assert wrong == {}, "the virtualenv does not match requirements-test.lock: run `make .venv/.installed` (or `make test`)"
