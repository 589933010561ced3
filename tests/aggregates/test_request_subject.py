"""Which partition a request naming contacts is decided in: its contact's, when it names
one contact alone, else every partition (the worker copies what is keyed by the sequence)."""

from __future__ import annotations

from typing import Any

import pytest

from aggregates.targets import request_subject
from schemas.envelope import CloudEvent, parse_time
from streams.routing import needs_fan_out


@pytest.mark.parametrize(
    ("data", "subject"),
    [
        ({"contact_ids": ["c-1"]}, "c-1"),
        ({"contact_ids": ["c-1", "c-2"]}, "sequence:seq"),
        ({"contact_ids": ["c-1"], "tag": "hot"}, "sequence:seq"),
        ({"tag": "hot"}, "sequence:seq"),
        ({"line_id": "line-1"}, "sequence:seq"),
        ({"contact_ids": [""]}, "sequence:seq"),  # refused by the data's check, named there
    ],
)
def test_one_contact_alone_is_its_own_subject(data: dict[str, Any], subject: str) -> None:
    data = {"sequence_id": "seq", **data}
    assert request_subject("seq", data) == subject
    # and the worker fans out exactly the requests not keyed by their one contact
    request = CloudEvent(
        id="r-1",
        source="test",
        type="enrollment.requested",
        time=parse_time("2027-07-06T14:00:00Z"),
        subject=subject,
        data=data,
    )
    assert needs_fan_out(request) is (subject != data.get("contact_ids", [None])[0])
