"""The folders import what DEVELOPERS.md's layout table says they may, and the domain stays
pure: no broker, database, network, wall clock or random ids in aggregates/ or schemas/."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "aggregates", "streams", "effects", "projections", "ops")

# Beyond the standard library and the folder itself (DEVELOPERS.md, "Layout").
MAY_IMPORT: dict[str, set[str]] = {
    "schemas": {"orjson", "fastjsonschema", "yaml"},
    "aggregates": {"schemas", "holidays", "phonenumbers"},
    "streams": {
        "aggregates",
        "schemas",
        "aiokafka",
        "eventsourcing",
        "psycopg",
        "orjson",
        "prometheus_client",
        # The Kafka runner of the read models (streams/projector.py) runs projections/.
        "projections",
    },
    "effects": {
        "schemas",
        "aggregates",
        "streams",
        "twilio",
        "sendgrid",
        "python_http_client",
        "requests",
        "urllib3",
        "aiohttp",
        "multidict",
        "yarl",
        "aiokafka",
        "psycopg",
        "psycopg_pool",
        "orjson",
        "prometheus_client",
    },
    "projections": {"schemas", "psycopg", "orjson", "streams"},
}

# The few modules one runner folder takes from another: small helpers, named here so that
# a new reach across is a decision rather than an accident.
ACROSS: dict[str, set[str]] = {
    "effects": {
        "aggregates.duplicates",
        "aggregates.mail_addresses",
        "streams.outages",
        "streams.progress",
    },
    "projections": {"streams.collector"},
    "streams": {"projections.pg_reads", "projections.postgres", "projections.stream"},
}

# Standard modules that would bring the world into the domain: a clock, chance, the
# network, processes, threads.
IMPURE_STDLIB = {
    "asyncio",
    "http",
    "os",
    "random",
    "secrets",
    "socket",
    "subprocess",
    "threading",
    "time",
    "urllib.request",
    "uuid",
}
# Calls that read the clock; the domain is handed its moments.
CLOCK_CALLS = {"now", "utcnow", "today", "time_ns", "monotonic"}


Module = tuple[str, ast.Module]


def _read(package: str) -> list[Module]:
    return [
        (str(path.relative_to(REPO)), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted((REPO / package).rglob("*.py"))
    ]


def _imports(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _outside_the_rules(package: str, modules: list[Module]) -> list[str]:
    allowed = MAY_IMPORT[package] | {package}
    across = ACROSS.get(package, set())
    wrong: list[str] = []
    for where, tree in modules:
        for name in _imports(tree):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            if top not in allowed:
                wrong.append(f"{where}: {name}")
            elif _is_other_runner(top, package) and name not in across:
                wrong.append(f"{where}: {name} (reaches across)")
    return wrong


def _is_other_runner(top: str, package: str) -> bool:
    return top in PACKAGES and top not in {package, "schemas", "aggregates"}


def _impure(modules: list[Module]) -> list[str]:
    wrong: list[str] = []
    for where, tree in modules:
        wrong.extend(
            f"{where}: imports {name}"
            for name in _imports(tree)
            if name in IMPURE_STDLIB or name.split(".")[0] in IMPURE_STDLIB
        )
        wrong.extend(
            f"{where}:{node.lineno}: calls .{node.func.attr}()"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_CALLS
        )
    return wrong


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_folder_imports_only_what_the_layout_allows(package: str) -> None:
    assert _outside_the_rules(package, _read(package)) == []


def test_nothing_outside_ops_imports_the_composition_root() -> None:
    wrong = [
        f"{where}: {name}"
        for package in PACKAGES
        if package != "ops"
        for where, tree in _read(package)
        for name in _imports(tree)
        if name.split(".")[0] == "ops"
    ]
    assert wrong == []


@pytest.mark.parametrize("package", ["aggregates", "schemas"])
def test_the_domain_reads_no_clock_chance_or_network(package: str) -> None:
    assert _impure(_read(package)) == []


def test_the_rules_name_a_module_that_breaks_them() -> None:
    # given a domain module that reaches for Kafka, a runner, the clock and chance
    module = (
        "aggregates/bad.py",
        ast.parse(
            "import aiokafka\nimport uuid\nfrom datetime import datetime\n"
            "from streams.worker import Worker\nmoment = datetime.now()\n"
        ),
    )
    # then each is named
    assert _outside_the_rules("aggregates", [module]) == [
        "aggregates/bad.py: aiokafka",
        "aggregates/bad.py: streams.worker",
    ]
    assert _impure([module]) == [
        "aggregates/bad.py: imports uuid",
        "aggregates/bad.py:5: calls .now()",
    ]
    # and a runner reaching into another runner's module not listed is named too
    across = ("effects/bad.py", ast.parse("from projections.history import History\n"))
    assert _outside_the_rules("effects", [across]) == ["effects/bad.py: projections.history"]
