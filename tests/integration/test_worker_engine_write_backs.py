"""Under the event clock, the engine's own contact changes written back to `contacts`:
they hold back no record of their moment (records of one moment go in the order they were
published, as in a replay of the same file), and a worker started again after deciding them
does not wait for the producer's watermark that came before them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

# Every new contact gets a tag from the engine: a change written back to `contacts`.
TAGGER = """
account: {timezone: UTC}
sequences:
  - id: tagger
    name: Tags every new contact
    process_on: every_day
    steps: [{id: s1, type: add_tag, tag: seen}]
    triggers: [{type: contact_created}]
"""
LATER = """
  - id: later
    name: Enrolled by hand
    process_on: every_day
    steps: [{id: s1, type: add_tag, tag: later}]
"""
HOT = """
  - id: hot
    name: Hot leads, removed on a reply
    process_on: every_day
    steps:
      - {id: h1, type: send_webhook, url: "https://hooks.example.com/h1"}
      - {id: h2, type: send_webhook, url: "https://hooks.example.com/h2",
         delay: {kind: default, amount: 1, unit: hours}}
    triggers: [{type: contact_tagged, tags: [lead]}]
"""
AT = "2027-07-06T14:00:00Z"


def _event(kind: str, n: str, contact: str, data: dict[str, Any], at: str = AT) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"e-{n}",
            "source": "crm",
            "type": kind,
            "time": at,
            "subject": contact,
            "data": {"contact_id": contact, **data},
        }
    )


def _written(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def _seen_on(
    bootstrap: str,
    prefix: str,
    topic: str,
    wanted: Callable[[dict[str, Any]], bool],
    limit: float = 60,
) -> bool:
    """Whether a record `wanted` comes to be on `topic` within `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(wanted(e) for e in read_topics(bootstrap, prefix, (topic,), quiet=2, limit=10)):
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
    definitions.write_text(TAGGER + LATER)
    lines = [_event("contact.created", f"c-{n}", f"c-{n}", {}) for n in range(12)]
    last = _event("contact.created", "c-last", "c-last", {}, at="2027-07-06T15:00:00Z")
    history = _written(tmp_path / "history.jsonl", [*lines, last])
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
        assert _seen_on(
            kafka_bootstrap,
            prefix,
            "decisions",
            lambda e: (
                e["type"] == "enrollment.enrolled"
                and e["data"]["sequence_id"] == "later"
                and e["data"]["contact_id"] == "c-3"
            ),
        ), (tmp_path / "w1.log").read_text()
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tag_behind_an_own_change_goes_before_a_reply_published_after_it(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    definitions = tmp_path / "sequences.yaml"
    definitions.write_text(TAGGER + HOT)
    created = _written(tmp_path / "created.jsonl", [_event("contact.created", "1", "c-2", {})])
    tagged = _event("contact.tag_added", "2", "c-2", {"tag": "lead"})
    reply = _event(
        "message.received", "3", "c-2", {"message_id": "m-3", "channel": "sms", "body": "hi"}
    )
    rest = _written(tmp_path / "rest.jsonl", [tagged, reply])
    prefix = pipeline_prefix
    connection = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--no-watermarks")
    worker = start_worker(kafka_bootstrap, fresh_database_url, prefix, log_to=tmp_path / "w.log")
    try:
        apply_definitions(kafka_bootstrap, prefix, definitions)
        # given a contact created, whose tag from the engine is written back to contacts
        assert cli("produce", str(created), *connection).returncode == 0
        assert _seen_on(kafka_bootstrap, prefix, "contacts", lambda e: e["source"] == "dripstream")
        # when a tag and then a reply of the same moment are published behind it
        assert cli("produce", str(rest), *connection).returncode == 0
        # then the reply, published after the tag, removes the contact the tag enrolled
        decided = read_topics(kafka_bootstrap, prefix, ("decisions",), quiet=4, limit=25)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    ended = [
        e["data"]["reason"]
        for e in decided
        if e["type"] == "enrollment.disenrolled" and e["data"]["sequence_id"] == "hot"
    ]
    assert ended == ["responded"]
