"""The worked `welcome` scenario end to end through `dripstream`: replay it, then read the
Sequences list and the History report from the replay's output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ops.cli import main
from tests.engine.helpers import welcome_dir

SCENARIOS = welcome_dir()


@pytest.fixture
def replayed(tmp_path: Path) -> Path:
    out = tmp_path / "welcome.out.jsonl"
    code = main(
        [
            "replay",
            "--sequences", str(SCENARIOS / "welcome.yaml"),
            "--events", str(SCENARIOS / "welcome.events.jsonl"),
            "--until", "2028-03-04T00:00:00Z",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    return out


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0
    return orjson.loads(capsys.readouterr().out)


def test_maya_is_still_enrolled_with_two_steps_to_go_and_ravi_left(
    capsys: pytest.CaptureFixture[str], replayed: Path
) -> None:
    rows = run_json(capsys, "sequences", "list", "--history", str(replayed), "--json")

    assert rows == [
        {
            "id": "welcome",
            "name": "Welcome web leads",
            "created": rows[0]["created"],  # the replay's choice
            "steps": 4,
            "process_on": "business_days",
            "line": "line-main",
            "contacts": 1,
            "remaining_tasks": 2,
            "status": "active",
            "problems": [],
        }
    ]


def test_the_history_tells_the_story_in_denver_time(
    capsys: pytest.CaptureFixture[str], replayed: Path
) -> None:
    base = ("history", "welcome", "--history", str(replayed), "--json")

    ravi = run_json(capsys, *base, "--search", "(720) 555-0143", "--type", "disenrollment")
    mail = run_json(capsys, *base, "--type", "email.send")
    # The latest event is Friday 08:30 local: "yesterday" is Thursday 2 March in Denver.
    thursday = run_json(capsys, *base, "--timeframe", "yesterday", "--type", "communication")

    assert ravi["rows"][0]["action"] == "Disenrolled: responded"
    assert [(r["contact_id"], r["time"]) for r in mail["rows"]] == [
        ("c-100", "2028-03-03T15:30:00Z")
    ]
    assert thursday["total"] == 2
    assert {r["action"] for r in thursday["rows"]} == {"SMS sent"}
