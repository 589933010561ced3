"""The effect processors' configuration, read once from the environment into a frozen object."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from effects.pg_schema import schema_problem

TWILIO_DEFAULT_BASE = "https://api.twilio.com"
SENDGRID_DEFAULT_BASE = "https://api.sendgrid.com"
MAILGUN_DEFAULT_BASE = "https://api.mailgun.net"  # the EU region: https://api.eu.mailgun.net
SENDGRID = "sendgrid"
MAILGUN = "mailgun"
EMAIL_PROVIDERS = (SENDGRID, MAILGUN)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


@dataclass(frozen=True, slots=True)
class EffectsSettings:
    # Kafka and PostgreSQL
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    database_url: str | None = None
    # The ledger's and the power-dialer lists' schema (effects/pg_schema.py); None: the
    # connection's search path, normally `public`.
    schema: str | None = None
    topic_prefix: str = "dripstream."
    # None: `<prefix>effects`, one group per deployment as the engine's `<prefix>engine`.
    consumer_group: str | None = None
    # `contacts` too: the engine writes power_dialer.* there (schemas.registry).
    command_topics: tuple[str, ...] = ("effects", "contacts")
    batch_size: int = 200
    # The inbound HTTP server (provider callbacks) and the address providers reach it at.
    http_host: str = "127.0.0.1"
    http_port: int = 8088
    public_base_url: str | None = None
    # The metrics on a listener of their own, not the callback server that providers (the
    # internet) reach; None: `/metrics` on the callback server, as before this was offered.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # Twilio
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_api_base: str = TWILIO_DEFAULT_BASE
    # async (effects/httpclient.py) | aiohttp | threads (the SDK's requests in a pool)
    twilio_transport: str = "async"
    # SendGrid
    sendgrid_api_key: str = ""
    sendgrid_api_base: str = SENDGRID_DEFAULT_BASE
    sendgrid_webhook_public_key: str | None = None
    sendgrid_inbound_token: str | None = None
    email_from: str = "no-reply@example.com"
    email_unsubscribe_group_id: int | None = None
    email_postal_address: str = ""
    # Which provider sends e-mail; None: chosen by the keys given (`chosen_email_provider`).
    email_provider: str | None = None
    # Mailgun
    mailgun_api_key: str = ""
    mailgun_domain: str = ""
    mailgun_api_base: str = MAILGUN_DEFAULT_BASE
    mailgun_webhook_signing_key: str | None = None
    # Put Mailgun's %unsubscribe_url% in a contact's mail: only once unsubscribe tracking
    # is on for the domain, or Mailgun leaves the placeholder as it is.
    mailgun_unsubscribe_link: bool = False
    # Webhooks
    webhook_secret: str | None = None
    # Caller id for texts and calls whose command names no line number (owner notices).
    default_from_number: str | None = None
    webhook_allowlist: tuple[str, ...] = ()
    # Throughput, pacing and retries
    concurrency: int = 32
    line_rate_per_second: float = 1.0
    line_burst: int = 1
    call_rate_per_second: float = 1.0
    max_attempts: int = 8
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 60.0
    provider_timeout_seconds: float = 15.0
    recovery_interval_seconds: float = 30.0

    @property
    def public_url(self) -> str:
        """Where Twilio posts callbacks: the public base, else the local server."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return f"http://{self.http_host}:{self.http_port}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def group_id(self) -> str:
        """The Kafka consumer group: two deployments with different prefixes on one broker
        must not share one (they would rebalance each other's partitions away)."""
        return self.consumer_group or self.topic("effects")

    @property
    def chosen_email_provider(self) -> str:
        """EFFECTS_EMAIL_PROVIDER when set; else Mailgun when only its key is given, so a
        deployment that configures Mailgun alone needs no more; else SendGrid, as before
        Mailgun was offered. `check` refuses the settings this rule cannot settle."""
        if self.email_provider:
            return self.email_provider
        if self.mailgun_api_key and not self.sendgrid_api_key:
            return MAILGUN
        return SENDGRID

    def with_overrides(self, **overrides: Any) -> EffectsSettings:
        """A copy with the given fields replaced; None values are ignored (unset CLI flags)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return replace(self, **given)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, checked: bool = True
    ) -> EffectsSettings:
        """The settings the environment gives; `checked=False` leaves `check` to the caller,
        for flags to override a value first (a flag can put right what the variable says)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (variable, kind) in _ENVIRONMENT.items():
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            values[name] = _convert(variable, raw, kind)
        settings = cls(**values)
        if checked:
            settings.check()
        return settings

    def check(self) -> None:
        if (problem := schema_problem(self.schema)) is not None:
            raise SettingsError(f"EFFECTS_SCHEMA (--schema): {problem}")
        public = self.public_base_url
        if public and not re.fullmatch(r"https?://\S+", public, re.IGNORECASE):
            # Providers would be given callback URLs they cannot call (and Twilio's
            # signatures are checked against it): said at the start, not at the first send.
            raise SettingsError(f"EFFECTS_PUBLIC_URL: must be an http(s) URL, got {public!r}")
        self._check_listeners()
        if self.twilio_transport not in {"async", "aiohttp", "threads"}:
            raise SettingsError("EFFECTS_TWILIO_TRANSPORT: must be async, aiohttp or threads")
        positive = {
            "EFFECTS_CONCURRENCY": self.concurrency,
            "EFFECTS_LINE_RATE": self.line_rate_per_second,
            "EFFECTS_LINE_BURST": self.line_burst,
            "EFFECTS_CALL_RATE": self.call_rate_per_second,
            "EFFECTS_MAX_ATTEMPTS": self.max_attempts,
            "EFFECTS_BATCH_SIZE": self.batch_size,
        }
        for variable, value in positive.items():
            if value <= 0:
                raise SettingsError(f"{variable}: must be positive, got {value}")
        self._check_email_provider()

    def _check_listeners(self) -> None:
        ports = {"EFFECTS_HTTP_PORT": self.http_port, "EFFECTS_METRICS_PORT": self.metrics_port}
        for variable, port in ports.items():
            # 0: a free port the system picks (tests run several processors side by side)
            if port is not None and not 0 <= port < 65536:
                raise SettingsError(f"{variable}: must be a port from 0 to 65535, got {port}")
        if self.metrics_port == self.http_port != 0:
            raise SettingsError(
                f"EFFECTS_METRICS_PORT (--metrics-port): {self.metrics_port} is the callback"
                " server's port (EFFECTS_HTTP_PORT, --http-port); leave it unset to serve"
                " /metrics there, or give another"
            )

    def _check_email_provider(self) -> None:
        """Refuse at start what would otherwise fail every e-mail, or send through a
        provider nobody meant."""
        chosen = self.email_provider
        if chosen is not None and chosen not in EMAIL_PROVIDERS:
            raise SettingsError(
                f"EFFECTS_EMAIL_PROVIDER: must be sendgrid or mailgun, got {chosen!r}"
            )
        if chosen is None and self.sendgrid_api_key and self.mailgun_api_key:
            raise SettingsError(
                "EFFECTS_EMAIL_PROVIDER: both SENDGRID_API_KEY and MAILGUN_API_KEY are set;"
                " say which sends e-mail (sendgrid or mailgun)"
            )
        if chosen == SENDGRID and self.mailgun_api_key and not self.sendgrid_api_key:
            raise SettingsError(
                "SENDGRID_API_KEY: is required with EFFECTS_EMAIL_PROVIDER=sendgrid"
                " (only MAILGUN_API_KEY is set)"
            )
        if self.chosen_email_provider != MAILGUN:
            return
        if not self.mailgun_api_key:
            raise SettingsError("MAILGUN_API_KEY: is required when e-mail goes through Mailgun")
        if not self.mailgun_domain:
            raise SettingsError(
                "MAILGUN_DOMAIN: is required when e-mail goes through Mailgun"
                " (the sending domain, e.g. mg.example.com)"
            )
        if "/" in self.mailgun_domain or not self.mailgun_domain.strip():
            raise SettingsError(f"MAILGUN_DOMAIN: a domain name, got {self.mailgun_domain!r}")
        if not self.mailgun_api_base.startswith(("https://", "http://")):
            raise SettingsError(
                f"MAILGUN_API_BASE: must be an http(s) URL, got {self.mailgun_api_base!r}"
            )


# field name -> (environment variable, kind)
_ENVIRONMENT: dict[str, tuple[str, str]] = {
    "kafka_bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", "str"),
    "database_url": ("DATABASE_URL", "str"),
    "schema": ("EFFECTS_SCHEMA", "str"),
    "topic_prefix": ("DRIPSTREAM_TOPIC_PREFIX", "str"),
    "consumer_group": ("EFFECTS_CONSUMER_GROUP", "str"),
    "batch_size": ("EFFECTS_BATCH_SIZE", "int"),
    "command_topics": ("EFFECTS_COMMAND_TOPICS", "list"),
    "http_host": ("EFFECTS_HTTP_HOST", "str"),
    "http_port": ("EFFECTS_HTTP_PORT", "int"),
    "public_base_url": ("EFFECTS_PUBLIC_URL", "str"),
    "metrics_port": ("EFFECTS_METRICS_PORT", "int"),
    "metrics_host": ("EFFECTS_METRICS_HOST", "str"),
    "twilio_account_sid": ("TWILIO_ACCOUNT_SID", "str"),
    "twilio_auth_token": ("TWILIO_AUTH_TOKEN", "str"),
    "twilio_api_base": ("TWILIO_API_BASE", "str"),
    "twilio_transport": ("EFFECTS_TWILIO_TRANSPORT", "str"),
    "sendgrid_api_key": ("SENDGRID_API_KEY", "str"),
    "sendgrid_api_base": ("SENDGRID_API_BASE", "str"),
    "sendgrid_webhook_public_key": ("SENDGRID_WEBHOOK_PUBLIC_KEY", "str"),
    "sendgrid_inbound_token": ("SENDGRID_INBOUND_TOKEN", "str"),
    "email_from": ("EFFECTS_EMAIL_FROM", "str"),
    "email_unsubscribe_group_id": ("SENDGRID_ASM_GROUP_ID", "int"),
    "email_postal_address": ("EFFECTS_POSTAL_ADDRESS", "str"),
    "email_provider": ("EFFECTS_EMAIL_PROVIDER", "str"),
    "mailgun_api_key": ("MAILGUN_API_KEY", "str"),
    "mailgun_domain": ("MAILGUN_DOMAIN", "str"),
    "mailgun_api_base": ("MAILGUN_API_BASE", "str"),
    "mailgun_webhook_signing_key": ("MAILGUN_WEBHOOK_SIGNING_KEY", "str"),
    "mailgun_unsubscribe_link": ("MAILGUN_UNSUBSCRIBE_LINK", "bool"),
    "webhook_secret": ("EFFECTS_WEBHOOK_SECRET", "str"),
    "default_from_number": ("EFFECTS_DEFAULT_FROM_NUMBER", "str"),
    "webhook_allowlist": ("EFFECTS_WEBHOOK_ALLOWLIST", "list"),
    "concurrency": ("EFFECTS_CONCURRENCY", "int"),
    "line_rate_per_second": ("EFFECTS_LINE_RATE", "float"),
    "line_burst": ("EFFECTS_LINE_BURST", "int"),
    "call_rate_per_second": ("EFFECTS_CALL_RATE", "float"),
    "max_attempts": ("EFFECTS_MAX_ATTEMPTS", "int"),
    "backoff_base_seconds": ("EFFECTS_BACKOFF_BASE", "float"),
    "backoff_cap_seconds": ("EFFECTS_BACKOFF_CAP", "float"),
    "provider_timeout_seconds": ("EFFECTS_PROVIDER_TIMEOUT", "float"),
    "recovery_interval_seconds": ("EFFECTS_RECOVERY_INTERVAL", "float"),
}

assert set(_ENVIRONMENT) <= {f.name for f in fields(EffectsSettings)}


def environment_variables() -> dict[str, str]:
    """Setting name -> environment variable, for the CLI's help text and the README."""
    return {name: variable for name, (variable, _) in _ENVIRONMENT.items()}


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _convert(variable: str, raw: str, kind: str) -> Any:
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise SettingsError(f"{variable}: expected a number, got {raw!r}") from None
    if kind == "bool":
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise SettingsError(f"{variable}: expected true or false, got {raw!r}")
    if kind == "list":
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw
