"""The engine has a rule for every input and command type the registry knows, and no other:
a type added to the registry without a rule would be decoded, stored and then passed over."""

from __future__ import annotations

from aggregates.engine import Engine
from schemas.registry import EVENT_TYPES


def test_every_input_and_command_type_has_a_rule_and_only_those() -> None:
    decided = {kind for kind, info in EVENT_TYPES.items() if info.direction in ("input", "command")}
    assert set(Engine._rules) == decided
