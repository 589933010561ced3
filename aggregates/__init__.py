"""dripstream: aggregates."""

# Before any zone is read: every time zone comes from the pinned tzdata package (see there).
from schemas import tz_database as _tz_database  # noqa: F401
