"""One effect to several recipients: every one is tried, and the outcome says who was not."""

from __future__ import annotations

import pytest

from effects.fan_out import to_each
from effects.ports import Ambiguous, Delivered, Rejected, SendResult, Transient

REFUSED = Rejected("invalid number", "21211")
LATER = Transient("twilio 503")
IN_DOUBT = Ambiguous("read timed out")


async def fan_out(answers: dict[str, SendResult]) -> tuple[SendResult, list[str]]:
    tried: list[str] = []

    async def send(member: str) -> SendResult:
        tried.append(member)
        return answers[member]

    result = await to_each(answers, send, provider="twilio", name=str)
    return result, tried


async def test_every_member_reached_is_one_delivery() -> None:
    result, _ = await fan_out({"a": Delivered("twilio", "SM1"), "b": Delivered("twilio", "SM2")})
    assert result == Delivered("twilio", "SM1,SM2")


async def test_a_refusal_does_not_stop_the_members_after_it() -> None:
    result, tried = await fan_out({"a": REFUSED, "b": Delivered("twilio", "SM2"), "c": LATER})
    assert tried == ["a", "b", "c"]
    assert result == Delivered("twilio", "SM2", undelivered="a: invalid number; c: twilio 503")


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([REFUSED, LATER], LATER),  # nothing went out: a retry is safe and may reach them
        ([REFUSED, LATER, IN_DOUBT], IN_DOUBT),  # one may have gone: never resend
        ([REFUSED, Rejected("not SMS-capable", "21614")], REFUSED),  # the first refusal
    ],
)
async def test_nobody_reached_answers_as_one_send_would(
    answers: list[SendResult], expected: SendResult
) -> None:
    result, _ = await fan_out({f"m{n}": answer for n, answer in enumerate(answers)})
    assert result == expected
