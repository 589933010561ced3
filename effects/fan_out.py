"""One effect, several recipients: a text to each member of a ring group, a preview call to
each of its agents.

Every member is tried, whatever the others answered: one agent's bad number must not keep
the rest from hearing of the contact. The effect's one outcome then says what happened:

- every member reached: sent;
- none reached: the first refusal, so the effect is retried or fails as one send would
  (nothing went out, so a retry texts nobody twice); a member in doubt makes it unknown;
- some reached: sent, with the members not reached and why in `undelivered`. Not retried,
  as a retry would reach the others again; the outcome says who was missed instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from effects.ports import Ambiguous, Delivered, Rejected, SendResult, Transient

Member = TypeVar("Member")


async def to_each(
    members: Iterable[Member],
    send: Callable[[Member], Awaitable[SendResult]],
    *,
    provider: str,
    name: Callable[[Member], str],
) -> SendResult:
    reached: list[str] = []
    missed: list[tuple[str, Rejected | Transient | Ambiguous]] = []
    for member in members:
        result = await send(member)
        if isinstance(result, Delivered):
            reached.append(result.provider_id)
        else:
            missed.append((name(member), result))
    if not missed:
        return Delivered(provider, ",".join(reached))
    if reached:
        said = "; ".join(f"{who}: {result.reason}" for who, result in missed)
        return Delivered(provider, ",".join(reached), undelivered=said)
    return _answer_for_none(answer for _, answer in missed)


def _answer_for_none(
    results: Iterable[Rejected | Transient | Ambiguous],
) -> Rejected | Transient | Ambiguous:
    """Nobody reached: in doubt beats for now (a retry might text one twice), for now beats
    for good (a retry may reach them)."""
    found = list(results)
    for kind in (Ambiguous, Transient):
        for result in found:
            if isinstance(result, kind):
                return result
    return found[0]
