"""A worker on the event clock started again goes on where its positions say, knowing how
far each topic had been read there: the producer's watermarks it passed are not read again,
and no record may wait for one."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.integration.pipeline import (
    apply_definitions,
    cli,
    produce_history,
    read_topics,
    start_worker,
    stop,
)

SEQUENCES = """
account: {timezone: UTC}
sequences:
  - id: tagger
    name: Tags every new contact
    process_on: every_day
    steps: [{id: s1, type: add_tag, tag: seen}]
    triggers: [{type: contact_created}]
  - id: later
    name: Enrolled by hand
    process_on: every_day
    steps: [{id: s1, type: add_tag, tag: later}]
"""


def _created(contact: str, time: str) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"created-{contact}",
            "source": "crm",
            "type": "contact.created",
            "time": time,
            "subject": contact,
            "data": {"contact_id": contact},
        }
    )


def _enrolled(bootstrap: str, prefix: str, contact: str, limit: float = 60) -> bool:
    """Whether the decisions come to hold `contact`'s enrollment in `later` within `limit`."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        decisions = read_topics(bootstrap, prefix, ("decisions",), quiet=2, limit=20)
        if any(
            e["type"] == "enrollment.enrolled"
            and e["data"]["sequence_id"] == "later"
            and e["data"]["contact_id"] == contact
            for e in decisions
        ):
            return True
    return False


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_command_after_a_restart_is_decided_though_its_contacts_end_past_the_watermark(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    # given a history whose contacts each get a tag from the engine, written back to
    # `contacts` after the producer's closing watermark, decided by a worker that then stops
    definitions = tmp_path / "sequences.yaml"
    definitions.write_text(SEQUENCES)
    history = tmp_path / "history.jsonl"
    contacts = [f"c-{n}" for n in range(12)]
    lines = [_created(c, "2027-07-06T14:00:00Z") for c in contacts]
    history.write_bytes(b"\n".join([*lines, _created("c-last", "2027-07-06T15:00:00Z")]) + b"\n")
    prefix = pipeline_prefix
    connection = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    worker = start_worker(kafka_bootstrap, fresh_database_url, prefix, log_to=tmp_path / "w0.log")
    try:
        apply_definitions(kafka_bootstrap, prefix, definitions)
        produce_history(kafka_bootstrap, prefix, history)
        written_back = read_topics(kafka_bootstrap, prefix, ("contacts",), expect=26, limit=120)
        assert sum(e["source"] == "dripstream" for e in written_back) == 13
        stop(worker)
        assert worker.returncode == 0
        # when it starts again and a contact is enrolled by hand at a time inside the history
        worker = start_worker(
            kafka_bootstrap, fresh_database_url, prefix, log_to=tmp_path / "w1.log"
        )
        enrolled = cli(
            "sequences", "enroll", "later", "--contact", "c-3",
            "--time", "2027-07-06T14:30:00Z", *connection,
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        # then it is decided, without waiting for another push of the producer's
        assert _enrolled(kafka_bootstrap, prefix, "c-3"), (tmp_path / "w1.log").read_text()
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
