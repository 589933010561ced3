"""The engine's own contact changes, written back to `contacts`, hold back no record of
their moment: under the event clock, records of one moment go in the order they were
published whatever topics they are on, as in a replay of the same file."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.integration.pipeline import (
    apply_definitions,
    cli,
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


def _line(kind: str, n: int, data: dict[str, object]) -> bytes:
    envelope = {"specversion": "1.0", "id": f"e-{n}", "source": "crm", "type": kind, "time": AT}
    return orjson.dumps({**envelope, "subject": "c-2", "data": {"contact_id": "c-2", **data}})


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tag_behind_an_own_change_goes_before_a_reply_published_after_it(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    definitions = tmp_path / "sequences.yaml"
    definitions.write_text(SEQUENCES)
    created, rest = tmp_path / "created.jsonl", tmp_path / "rest.jsonl"
    created.write_bytes(_line("contact.created", 1, {}) + b"\n")
    tagged = _line("contact.tag_added", 2, {"tag": "lead"})
    reply = _line("message.received", 3, {"message_id": "m-3", "channel": "sms", "body": "hi"})
    rest.write_bytes(tagged + b"\n" + reply + b"\n")
    prefix = pipeline_prefix
    connection = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--no-watermarks")
    worker = start_worker(kafka_bootstrap, fresh_database_url, prefix, log_to=tmp_path / "w.log")
    try:
        apply_definitions(kafka_bootstrap, prefix, definitions)
        # given a contact created, whose tag from the engine is written back to contacts
        assert cli("produce", str(created), *connection).returncode == 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            contacts = read_topics(kafka_bootstrap, prefix, ("contacts",), expect=2, limit=10)
            if any(e["source"] == "dripstream" for e in contacts):
                break
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
