"""Which provider sends e-mail, and the configurations refused at start (naming the variable)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from effects.mail import SendGridEmailSender
from effects.mailgun import MailgunEmailSender
from effects.settings import EffectsSettings, SettingsError
from effects.wiring import email_sender, missing_credentials
from ops import effects_cli

MAILGUN = {"MAILGUN_API_KEY": "key-1", "MAILGUN_DOMAIN": "mg.example.com"}


def clock() -> datetime:
    return datetime(2027, 7, 2, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("environment", "provider"),
    [
        ({}, "sendgrid"),  # as before Mailgun was offered
        ({"SENDGRID_API_KEY": "SG.k"}, "sendgrid"),
        (MAILGUN, "mailgun"),  # Mailgun's settings alone are enough
        ({**MAILGUN, "EFFECTS_EMAIL_PROVIDER": "mailgun"}, "mailgun"),
        ({"SENDGRID_API_KEY": "SG.k", **MAILGUN, "EFFECTS_EMAIL_PROVIDER": "mailgun"}, "mailgun"),
        ({"SENDGRID_API_KEY": "SG.k", **MAILGUN, "EFFECTS_EMAIL_PROVIDER": "sendgrid"}, "sendgrid"),
        ({"SENDGRID_API_KEY": "SG.k", "MAILGUN_DOMAIN": "mg.example.com"}, "sendgrid"),
    ],
)
def test_the_email_provider_is_the_one_named_else_the_one_whose_key_is_given(
    environment: dict[str, str], provider: str
) -> None:
    assert EffectsSettings.from_env(environment).chosen_email_provider == provider


def test_mailgun_settings_come_from_their_variables() -> None:
    settings = EffectsSettings.from_env(
        {
            **MAILGUN,
            "MAILGUN_API_BASE": "https://api.eu.mailgun.net",
            "MAILGUN_WEBHOOK_SIGNING_KEY": "whk",
            "MAILGUN_UNSUBSCRIBE_LINK": "true",
        }
    )
    assert settings.mailgun_api_key == "key-1"
    assert settings.mailgun_domain == "mg.example.com"
    assert settings.mailgun_api_base == "https://api.eu.mailgun.net"
    assert settings.mailgun_webhook_signing_key == "whk"
    assert settings.mailgun_unsubscribe_link is True
    assert EffectsSettings.from_env(MAILGUN).mailgun_api_base == "https://api.mailgun.net"


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"EFFECTS_EMAIL_PROVIDER": "postmark"}, "EFFECTS_EMAIL_PROVIDER: must be sendgrid or"),
        (
            {"SENDGRID_API_KEY": "SG.k", **MAILGUN},
            "EFFECTS_EMAIL_PROVIDER: both SENDGRID_API_KEY and MAILGUN_API_KEY are set",
        ),
        (
            {**MAILGUN, "EFFECTS_EMAIL_PROVIDER": "sendgrid"},
            "SENDGRID_API_KEY: is required with EFFECTS_EMAIL_PROVIDER=sendgrid",
        ),
        ({"EFFECTS_EMAIL_PROVIDER": "mailgun"}, "MAILGUN_API_KEY: is required"),
        (
            {"EFFECTS_EMAIL_PROVIDER": "mailgun", "MAILGUN_DOMAIN": "mg.example.com"},
            "MAILGUN_API_KEY: is required",
        ),
        ({"MAILGUN_API_KEY": "key-1"}, "MAILGUN_DOMAIN: is required"),
        ({**MAILGUN, "MAILGUN_DOMAIN": "https://mg.example.com"}, "MAILGUN_DOMAIN: a domain"),
        ({**MAILGUN, "MAILGUN_API_BASE": "api.mailgun.net"}, "MAILGUN_API_BASE: must be an"),
        ({"MAILGUN_UNSUBSCRIBE_LINK": "sometimes"}, "MAILGUN_UNSUBSCRIBE_LINK: expected true"),
    ],
)
def test_a_conflicting_or_incomplete_email_setup_is_refused_naming_the_variable(
    environment: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        EffectsSettings.from_env(environment)


def test_dripstream_effects_refuses_to_start_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given Mailgun chosen without its domain
    monkeypatch.setenv("EFFECTS_EMAIL_PROVIDER", "mailgun")
    monkeypatch.setenv("MAILGUN_API_KEY", "key-1")
    monkeypatch.delenv("MAILGUN_DOMAIN", raising=False)
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    # when the command starts, then it stops at once with status 2, naming the variable
    assert effects_cli.main(["effects", "--commands", "/nonexistent.jsonl"]) == 2
    assert "MAILGUN_DOMAIN: is required" in capsys.readouterr().err


async def test_the_wiring_builds_the_chosen_sender() -> None:
    closers: list[Callable[[], Awaitable[None]]] = []
    mailgun = email_sender(EffectsSettings.from_env(MAILGUN), clock, closers)
    assert isinstance(mailgun, MailgunEmailSender)
    assert closers == [mailgun.close]  # its connections are let go with the runtime
    await mailgun.close()
    sendgrid = email_sender(EffectsSettings.from_env({"SENDGRID_API_KEY": "SG.k"}), clock, [])
    assert isinstance(sendgrid, SendGridEmailSender)


def test_sendgrids_key_is_not_missing_when_mailgun_sends() -> None:
    settings = EffectsSettings.from_env({**MAILGUN, "TWILIO_ACCOUNT_SID": "AC1"})
    assert missing_credentials(settings) == ["TWILIO_AUTH_TOKEN"]
