"""Settings from the environment: a variable set but empty is not set (its default holds);
a topic prefix, schema or process count that cannot be is refused before anything
connects."""

from __future__ import annotations

import pytest

from ops.cli import main
from ops.settings import DEFAULT_BOOTSTRAP, DEFAULT_PREFIX, Settings


def test_empty_kafka_and_database_variables_fall_back_to_their_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.delenv("DRIPSTREAM_TOPIC_PREFIX", raising=False)

    settings = Settings.from_environment()

    assert settings.bootstrap_servers == DEFAULT_BOOTSTRAP
    assert settings.database_url is None
    assert settings.topic_prefix == DEFAULT_PREFIX


def test_an_empty_topic_prefix_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPSTREAM_TOPIC_PREFIX", "")

    assert Settings.from_environment().topic_prefix == ""


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["sequences", "apply", "f.yaml", "--topic-prefix", "bad prefix/"], "takes only letters"),
        (["produce", "f.jsonl", "--topic-prefix", "x" * 240], "at most 235 characters"),
        (["worker", "--schema", ""], "is not a plain PostgreSQL name"),
        (["projections", "run", "--schema", "pg_catalog"], "names starting pg_ are"),
        (["sequences", "list", "--schema", "two words"], "is not a plain PostgreSQL name"),
        (["worker", "--processes", "1000"], "one a core is best"),
    ],
)
def test_a_topic_prefix_or_schema_that_cannot_be_is_a_usage_error(
    arguments: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # (a prefix Kafka refuses made the clients wait for ever for its topics' metadata)
    with pytest.raises(SystemExit) as refused:
        main(arguments)
    assert refused.value.code == 2
    assert said in capsys.readouterr().err


def test_the_environments_topic_prefix_is_checked_as_the_flags_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIPSTREAM_TOPIC_PREFIX", "x/y")
    with pytest.raises(SystemExit):
        main(["produce", "f.jsonl"])
    assert "(DRIPSTREAM_TOPIC_PREFIX, --topic-prefix)" in capsys.readouterr().err
