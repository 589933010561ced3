"""The one time-zone database every part of dripstream reads: the pinned `tzdata` package.

Python's `zoneinfo` reads the host's database first (`/usr/share/zoneinfo`), whose version is
the operating system's: a replay on a laptop, a worker on a server and a snapshot read back
by a third machine could then give one local time different offsets, and so different due
moments, whenever a country's rules changed between their versions. Decisions are replayed
and compared byte for byte, so they must not depend on the host. Emptying zoneinfo's search
path makes it read only the `tzdata` package, whose version the install pins
(ops/constraints.txt) and a snapshot's fingerprint includes. A host without a database of its
own (a slim container, Windows) works the same.

Imported for this effect by each package that reads zones (`schemas`, `aggregates`,
`projections`, `ops`), so it holds before any zone is read.
"""

from __future__ import annotations

import importlib.metadata
import zoneinfo

__all__ = ["TZDATA_VERSION"]

zoneinfo.reset_tzpath(to=())
# Zones read before this import (by another library) would stay cached from the host's files.
zoneinfo.ZoneInfo.clear_cache()

TZDATA_VERSION = importlib.metadata.version("tzdata")
