"""Settings read once from the environment; the `effects` command's flags; the retry math."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import timedelta

import pytest

from effects.ratelimit import LineRateLimiter
from effects.retry import RetryPolicy, parse_retry_after
from effects.settings import EffectsSettings, SettingsError
from effects.wiring import missing_credentials
from ops import effects_cli
from tests.effects.helpers import T0


def test_settings_come_from_the_contract_environment_variables() -> None:
    settings = EffectsSettings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "DATABASE_URL": "postgresql://u:p@db/x",
            "TWILIO_ACCOUNT_SID": "AC1",
            "TWILIO_AUTH_TOKEN": "tok",
            "TWILIO_API_BASE": "http://127.0.0.1:1234",
            "SENDGRID_API_KEY": "SG.k",
            "SENDGRID_API_BASE": "http://127.0.0.1:5678",
            "SENDGRID_ASM_GROUP_ID": "42",
            "EFFECTS_LINE_RATE": "500",
            "EFFECTS_WEBHOOK_ALLOWLIST": "hooks.internal, 10.0.0.0/8",
        }
    )
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert settings.database_url == "postgresql://u:p@db/x"
    assert settings.twilio_api_base == "http://127.0.0.1:1234"
    assert settings.sendgrid_api_base == "http://127.0.0.1:5678"
    assert settings.email_unsubscribe_group_id == 42
    assert settings.line_rate_per_second == 500.0
    assert settings.webhook_allowlist == ("hooks.internal", "10.0.0.0/8")
    assert settings.topic("effects") == "dripstream.effects"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.concurrency = 1  # type: ignore[misc]


def test_defaults_reach_the_real_providers() -> None:
    settings = EffectsSettings.from_env({})
    assert settings.twilio_api_base == "https://api.twilio.com"
    assert settings.sendgrid_api_base == "https://api.sendgrid.com"
    assert settings.line_rate_per_second == 1.0
    assert settings.public_url == "http://127.0.0.1:8088"


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"EFFECTS_CONCURRENCY": "many"}, "EFFECTS_CONCURRENCY: expected a number"),
        ({"EFFECTS_LINE_RATE": "0"}, "EFFECTS_LINE_RATE: must be positive"),
        ({"EFFECTS_TWILIO_TRANSPORT": "carrier-pigeon"}, "EFFECTS_TWILIO_TRANSPORT"),
        ({"EFFECTS_PUBLIC_URL": "nonsense"}, "EFFECTS_PUBLIC_URL: must be an http"),
        ({"EFFECTS_PUBLIC_URL": "https://"}, "EFFECTS_PUBLIC_URL: must be an http"),
        ({"EFFECTS_METRICS_PORT": "70000"}, "EFFECTS_METRICS_PORT: must be a port from 0"),
        ({"EFFECTS_HTTP_PORT": "-1"}, "EFFECTS_HTTP_PORT: must be a port from 0"),
        ({"EFFECTS_METRICS_PORT": "8088"}, r"EFFECTS_METRICS_PORT \(--metrics-port\): 8088 is"),
    ],
)
def test_a_bad_setting_names_its_variable(environment: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        EffectsSettings.from_env(environment)


def test_the_effects_command_takes_its_flags_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "from-env:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    parser = argparse.ArgumentParser()
    register_into = parser.add_subparsers(dest="command")
    effects_cli.register(register_into)
    args = parser.parse_args(
        ["effects", "--bootstrap", "flag:9092", "--http-port", "9099", "--topic-prefix", "t."]
    )
    assert args.handler is effects_cli.run
    settings = effects_cli.settings_from(args)
    assert settings.kafka_bootstrap_servers == "flag:9092"
    assert settings.database_url == "postgresql://env/db"
    assert settings.http_port == 9099
    assert settings.topic("outcomes") == "t.outcomes"
    # the consumer group follows the prefix, so two deployments never share one
    assert settings.group_id == "t.effects"


def test_the_metrics_listener_is_set_by_flag_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given no metrics port: /metrics stays on the callback server
    assert EffectsSettings.from_env({}).metrics_port is None
    # given port 0 for both: each a free port the system picks, so no clash
    both = EffectsSettings.from_env({"EFFECTS_HTTP_PORT": "0", "EFFECTS_METRICS_PORT": "0"})
    assert (both.http_port, both.metrics_port) == (0, 0)
    # given one in the environment, and a host
    monkeypatch.setenv("EFFECTS_METRICS_PORT", "9465")
    monkeypatch.setenv("EFFECTS_METRICS_HOST", "0.0.0.0")
    parser = argparse.ArgumentParser()
    effects_cli.register(parser.add_subparsers(dest="command"))
    from_env = effects_cli.settings_from(parser.parse_args(["effects"]))
    assert (from_env.metrics_host, from_env.metrics_port) == ("0.0.0.0", 9465)
    # then a flag wins over it
    flagged = effects_cli.settings_from(parser.parse_args(["effects", "--metrics-port", "9466"]))
    assert flagged.metrics_port == 9466
    # and a flag that puts a clash of the environment right is taken (checked after it)
    monkeypatch.setenv("EFFECTS_METRICS_PORT", "8088")
    moved = effects_cli.settings_from(parser.parse_args(["effects", "--http-port", "9000"]))
    assert (moved.http_port, moved.metrics_port) == (9000, 8088)
    with pytest.raises(SettingsError, match=r"EFFECTS_METRICS_PORT \(--metrics-port\): 8088"):
        effects_cli.settings_from(parser.parse_args(["effects"]))


def test_the_consumer_group_is_named_by_the_prefix_unless_set() -> None:
    # given two deployments on one broker, with different prefixes
    default = EffectsSettings.from_env({})
    audit = EffectsSettings.from_env({"DRIPSTREAM_TOPIC_PREFIX": "audit4."})
    # then each has a group of its own, named as the engine worker's (`<prefix>engine`)
    assert default.group_id == "dripstream.effects"
    assert audit.group_id == "audit4.effects"
    # and a group set in the environment or by flag wins over the prefix
    pinned = EffectsSettings.from_env(
        {"DRIPSTREAM_TOPIC_PREFIX": "audit4.", "EFFECTS_CONSUMER_GROUP": "fx-blue"}
    )
    assert pinned.group_id == "fx-blue"
    parser = argparse.ArgumentParser()
    effects_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["effects", "--topic-prefix", "t.", "--consumer-group", "fx-green"])
    assert effects_cli.settings_from(args).group_id == "fx-green"


def test_full_jitter_stays_under_the_capped_exponential() -> None:
    policy = RetryPolicy(max_attempts=10, base_seconds=1.0, cap_seconds=8.0)
    assert [policy.delay(n, lambda: 0.999) for n in range(1, 6)] == pytest.approx(
        [0.999, 1.998, 3.996, 7.992, 7.992]
    )
    assert policy.delay(3, lambda: 0.0) == 0.0
    assert policy.delay(10, lambda: 0.5) is None


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("120", T0) == 120.0
    later = T0 + timedelta(seconds=90)
    assert parse_retry_after(later.strftime("%a, %d %b %Y %H:%M:%S GMT"), T0) == 90.0
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after(None, T0) is None
    # a Retry-After past the policy's patience means giving up, not waiting an hour
    assert RetryPolicy(max_retry_after=300).delay(1, lambda: 0.5, 3600.0) is None


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    now = [0.0]

    async def no_sleep(seconds: float) -> None:
        return None

    limiter = LineRateLimiter(2.0, 3, monotonic=lambda: now[0], sleep=no_sleep)
    assert [limiter.reserve("a") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    now[0] = 10.0  # long idle: the bucket is full again, not fuller
    assert [limiter.reserve("a") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_empty_provider_credentials_are_named() -> None:
    none = EffectsSettings()
    assert missing_credentials(none) == [
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "SENDGRID_API_KEY",
    ]
    given = EffectsSettings(
        twilio_account_sid="AC1", twilio_auth_token="t", sendgrid_api_key="SG.x"
    )
    assert missing_credentials(given) == []
