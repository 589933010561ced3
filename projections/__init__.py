"""dripstream: projections — the read models folded from the output stream (the Sequences
list, the Sequence History report, the per-contact view), in memory from a `.jsonl` file or in
PostgreSQL. See projections/README.md."""

# Before any zone is read: every time zone comes from the pinned tzdata package (see there).
from schemas import tz_database as _tz_database  # noqa: F401
