"""Every zone comes from the pinned tzdata package, whatever the host's database says."""

from __future__ import annotations

import importlib.resources
import os
import subprocess
import sys
from pathlib import Path

import pytest

_PROBE = """
from datetime import datetime
import aggregates.timezones, schemas.checking
zone = aggregates.timezones.zone_named("America/New_York")
print(zone.utcoffset(datetime(2027, 1, 15)))
print(schemas.checking.is_iana_zone("America/Host_Only"))
"""


@pytest.fixture
def misleading_host_database(tmp_path: Path) -> Path:
    """A zone directory whose New York keeps UTC, and a zone no tz database has."""
    utc = importlib.resources.files("tzdata.zoneinfo").joinpath("Etc/UTC").read_bytes()
    (tmp_path / "America").mkdir()
    (tmp_path / "America" / "New_York").write_bytes(utc)
    (tmp_path / "America" / "Host_Only").write_bytes(utc)
    return tmp_path


def test_the_hosts_database_is_not_read(misleading_host_database: Path) -> None:
    env = {**os.environ, "PYTHONTZPATH": str(misleading_host_database)}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["-1", "day,", "19:00:00", "False"]
