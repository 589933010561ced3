"""What holds for every scenario: same inputs, byte-identical output (CONTRACT.md §4), and
well-formed decisions from the engine, in time order (§1.2, §3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from schemas.validation import decode_event
from tests.scenarios.harness import Replay, replay, scenario_names, until_of

EXIT_STATUS = {"bad_input_lines": 1} | {
    name: 2 for name in scenario_names() if name.startswith("invalid_file_")
}


def test_there_are_many_scenarios() -> None:
    assert len(scenario_names()) >= 30


@pytest.mark.parametrize("name", scenario_names())
def test_the_prose_names_the_command_and_the_inputs_are_in_time_order(name: str) -> None:
    folder = Path(__file__).parent / name
    first = (folder / "expected.md").read_text(encoding="utf-8")
    assert first.startswith(
        "# What `dripstream replay --sequences sequences.yaml --events events.jsonl"
    )
    assert (until_of(name) is None) == (name == "default_until")
    times = []
    for line in (folder / "events.jsonl").read_bytes().splitlines():
        try:
            times.append(orjson.loads(line)["time"])
        except (orjson.JSONDecodeError, KeyError):
            continue
    valid = [t for t in times if t[:1].isdigit()]
    assert valid == sorted(valid)


@pytest.mark.parametrize("name", scenario_names())
def test_the_exit_status(replayed: Callable[[str], Replay], name: str) -> None:
    run = replayed(name)
    assert run.status == EXIT_STATUS.get(name, 0), run.stderr
    if run.status == 0:
        # Nothing on stderr but the word that a sequence loads invalid (some scenarios
        # show what happens then).
        said = [line for line in run.stderr.splitlines() if " is invalid, nobody is" not in line]
        assert said == []
        assert run.raw


@pytest.mark.parametrize("name", scenario_names())
def test_a_second_run_is_byte_identical(
    replayed: Callable[[str], Replay], tmp_path: Path, name: str
) -> None:
    first = replayed(name)
    second = replay(name, tmp_path)
    assert (second.status, second.stderr) == (first.status, first.stderr)
    assert second.raw == first.raw


@pytest.mark.parametrize("name", scenario_names())
def test_every_output_is_a_valid_engine_event_with_a_unique_id(
    replayed: Callable[[str], Replay], name: str
) -> None:
    run = replayed(name)
    ids = [e["id"] for e in run.events]
    assert len(ids) == len(set(ids))
    assert {e["source"] for e in run.events} <= {"dripstream"}
    for line in run.raw.splitlines():
        decode_event(line)


@pytest.mark.parametrize("name", scenario_names())
def test_outputs_come_in_time_order(replayed: Callable[[str], Replay], name: str) -> None:
    times = [e["time"] for e in replayed(name).events]
    assert times == sorted(times)
