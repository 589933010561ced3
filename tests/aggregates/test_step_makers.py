"""Every step type a sequence may hold makes its command, and nothing else has a maker."""

from __future__ import annotations

from aggregates.sequence import STEP_TYPES
from aggregates.steps import _MAKERS


def test_each_step_type_has_one_maker_and_no_maker_is_left_over() -> None:
    assert set(_MAKERS) == set(STEP_TYPES)
