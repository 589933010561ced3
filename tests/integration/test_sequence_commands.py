"""`dripstream sequences remove | copy | delete` on the real broker and PostgreSQL: the
commands reach the workers and are decided, a removal by tag on every partition."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.pipeline import cli, read_topics, start_worker, stop

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SEQUENCES = """\
account: {timezone: America/New_York, lines: {line-1: "+12125550000"}}
sequences:
  - id: nurture
    name: Nurture
    process_on: every_day
    outbound_line: line-1
    steps: [{id: s1, type: send_sms, delay: {kind: default, amount: 30, unit: days}, text: "Hi"}]
    triggers: [{type: contact_created}]
"""


def _contacts() -> list[dict[str, Any]]:
    return [
        {
            "specversion": "1.0",
            "id": f"c-{n}",
            "source": "crm",
            "type": "contact.created",
            "time": "2027-07-06T13:00:00Z",
            "subject": f"c-{n}",
            "data": {
                "contact_id": f"c-{n}",
                "phone": f"+121255507{n:02d}",
                "tags": ["hot"] if n % 2 == 0 else [],
            },
        }
        for n in range(12)
    ]


def _decisions(bootstrap: str, prefix: str, expect: int) -> list[dict[str, Any]]:
    return [
        e
        for e in read_topics(bootstrap, prefix, ("decisions",), expect=expect)
        if e["type"] in {"enrollment.disenrolled", "sequence.defined", "sequence.deleted"}
    ]


def _until(bootstrap: str, prefix: str, wanted: int, seconds: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        found = _decisions(bootstrap, prefix, wanted)
        if len(found) >= wanted or time.monotonic() > deadline:
            return found


def test_remove_copy_and_delete_from_the_command_line_are_decided_by_the_worker(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    connection = ("--bootstrap", kafka_bootstrap, "--topic-prefix", pipeline_prefix)
    sequences = tmp_path / "sequences.yaml"
    sequences.write_text(SEQUENCES)
    history = tmp_path / "events.jsonl"
    history.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in _contacts()))
    worker = start_worker(kafka_bootstrap, fresh_database_url, pipeline_prefix)
    try:
        # given twelve contacts enrolled in a sequence, half of them tagged hot
        assert cli("sequences", "apply", str(sequences), *connection).returncode == 0
        assert cli("produce", str(history), *connection).returncode == 0
        # when the hot ones are taken out, the sequence copied, then deleted
        for command in (
            ("remove", "nurture", "--tag", "hot"),
            ("copy", "nurture", "nurture-2", "--name", "Nurture again"),
            ("delete", "nurture"),
        ):
            done = cli("sequences", *command, *connection)
            assert done.returncode == 0, done.stderr
            time.sleep(1)  # one after the other, as a user would
        # then: defined, 6 removed by hand, the copy defined, deleted with the other 6
        found = _until(kafka_bootstrap, pipeline_prefix, 1 + 6 + 1 + 1 + 6)
    finally:
        stop(worker)
    removed = {
        reason: sorted(e["data"]["contact_id"] for e in found if e["data"].get("reason") == reason)
        for reason in ("manual", "sequence_deleted")
    }
    assert removed == {
        "manual": sorted(f"c-{n}" for n in range(0, 12, 2)),
        "sequence_deleted": sorted(f"c-{n}" for n in range(1, 12, 2)),
    }
    copies = [e["data"] for e in found if e["type"] == "sequence.defined"]
    assert sorted((d["sequence_id"], d["name"]) for d in copies) == [
        ("nurture", "Nurture"),
        ("nurture-2", "Nurture again"),
    ]
    assert [e["data"]["sequence_id"] for e in found if e["type"] == "sequence.deleted"] == [
        "nurture"
    ]


def test_a_file_applied_again_after_another_takes_effect_again(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    # given a sequence applied, then changed (renamed), then the first file applied again
    # to undo the change: the first and the third publications carry the same document
    connection = ("--bootstrap", kafka_bootstrap, "--topic-prefix", pipeline_prefix)
    first = tmp_path / "first.yaml"
    first.write_text(SEQUENCES)
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(SEQUENCES.replace("name: Nurture", "name: Renamed"))
    worker = start_worker(kafka_bootstrap, fresh_database_url, pipeline_prefix)
    try:
        for path, at in ((first, []), (renamed, []), (first, ["--time", "2027-07-06T12:00:00Z"])):
            done = cli("sequences", "apply", str(path), *connection, *at)
            assert done.returncode == 0, done.stderr
            time.sleep(1)
        found = _until(kafka_bootstrap, pipeline_prefix, 3)
    finally:
        stop(worker)
    # then each is decided (the third used to be skipped as a repeat of the first's id)
    names = [e["data"]["name"] for e in found if e["type"] == "sequence.defined"]
    assert names == ["Nurture", "Renamed", "Nurture"]
    # under three ids, the last at the time it was given
    applied = read_topics(kafka_bootstrap, pipeline_prefix, ("commands",), expect=3)
    assert len({e["id"] for e in applied}) == 3
    assert applied[-1]["time"] == "2027-07-06T12:00:00Z"


def test_apply_takes_a_time_and_refuses_one_that_is_no_time(tmp_path: Path) -> None:
    sequences = tmp_path / "sequences.yaml"
    sequences.write_text(SEQUENCES)
    done = cli("sequences", "apply", str(sequences), "--time", "soon")
    assert done.returncode == 2
    assert "argument --time: not an RFC 3339 time: 'soon'" in done.stderr
