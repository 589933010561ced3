"""The real command line: bad input lines, refused sequence files, and a run in its own
process giving the same bytes as in this one (CONTRACT.md §4)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.scenarios.harness import Replay, replay_arguments, stderr_lines_about

ROOT = Path(__file__).resolve().parents[2]


def _dripstream() -> list[str]:
    script = Path(sys.executable).with_name("dripstream")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ops.cli"]


def _subprocess(name: str, out: Path, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [*_dripstream(), *replay_arguments(name, out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture(scope="module")
def bad_lines(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Replay]:
    """bad_input_lines through the installed `dripstream` in a process of its own."""
    out = tmp_path_factory.mktemp("bad") / "out.jsonl"
    done = _subprocess("bad_input_lines", out)
    return done.returncode, done.stderr, Replay(done.returncode, done.stderr, out.read_bytes(), out)


@pytest.mark.parametrize(
    ("line", "field"),
    [(2, "JSON"), (4, "data.contact_id"), (5, "type"), (7, "time")],
)
def test_each_bad_line_is_reported_with_its_number_and_field(
    bad_lines: tuple[int, str, Replay], line: int, field: str | None
) -> None:
    _, stderr, _ = bad_lines
    reports = list(stderr_lines_about(stderr, line))
    assert len(reports) == 1, stderr
    if field is not None:
        assert field in reports[0]


def test_good_lines_are_not_reported_and_the_run_goes_on(
    bad_lines: tuple[int, str, Replay],
) -> None:
    status, stderr, run = bad_lines
    assert status == 1
    for line in (1, 3, 6, 8):
        assert list(stderr_lines_about(stderr, line)) == [], stderr
    assert [(e["data"]["contact_id"], e["data"]["body"]) for e in run.of("sms.send")] == [
        ("c-1", "Hi Ana Reply STOP to opt out."),
        ("c-2", "Hi Ben Reply STOP to opt out."),
    ]


def test_the_same_run_in_process_agrees(
    replayed: Callable[[str], Replay], bad_lines: tuple[int, str, Replay]
) -> None:
    status, _, run = bad_lines
    inside = replayed("bad_input_lines")
    assert (inside.status, inside.raw) == (status, run.raw)


@pytest.mark.parametrize(
    ("name", "named"),
    [
        ("invalid_file_missing_text", ("broken", "steps", "text")),
        ("invalid_file_unknown_step", ("faxer", "steps", "type")),
        ("invalid_file_unknown_trigger", ("psychic", "triggers", "type")),
        ("invalid_file_missing_name", ("nameless", "", "name")),
        ("invalid_file_delay_amount", ("slow", "steps", "amount")),
    ],
)
def test_a_refused_file_names_the_sequence_and_field_and_processes_nothing(
    replayed: Callable[[str], Replay], name: str, named: tuple[str, str, str]
) -> None:
    run = replayed(name)
    assert run.status == 2
    sequence, collection, field = named
    assert f"'{sequence}'" in run.stderr or f'"{sequence}"' in run.stderr, run.stderr
    after = run.stderr.split(sequence, 1)[1]
    if collection:
        assert collection in after, run.stderr
        after = after.split(collection, 1)[1]
    assert field in after, run.stderr
    assert run.raw == b""


def test_a_file_that_is_not_yaml_is_refused(replayed: Callable[[str], Replay]) -> None:
    run = replayed("invalid_file_not_yaml")
    assert run.status == 2
    assert "YAML" in run.stderr
    assert run.raw == b""


def test_a_refused_file_in_its_own_process(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    done = _subprocess("invalid_file_unknown_step", out)
    assert done.returncode == 2
    assert "faxer" in done.stderr
    assert not out.exists() or out.read_bytes() == b""


@pytest.mark.parametrize("name", ["owner_notices", "stop_start_keywords"])
def test_other_processes_with_other_hash_seeds_write_the_same_bytes(
    replayed: Callable[[str], Replay], tmp_path: Path, name: str
) -> None:
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"{seed}.jsonl"
        done = _subprocess(name, out, hash_seed=seed)
        assert done.returncode == 0, done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == replayed(name).raw
