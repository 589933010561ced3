"""What the HTTP API takes, shared by its handlers (ops/http_api.py) and the document that
describes them (ops/openapi.py)."""

from __future__ import annotations

# The keys of a request naming contacts (enrollments, removals): any of them, together.
ENROLL_KEYS = ("contact_ids", "tag", "line_id", "contact_group")

# A history can hold millions of rows: a page unless asked otherwise, and never all of them
# at once (the total says how many there are).
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_COUNT = 1_000_000_000  # inside PostgreSQL's bigint, and past any history's length
