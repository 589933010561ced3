"""Two deployments sharing one PostgreSQL database keep their effect ledgers and power-dialer
lists apart, each in the schema `--schema` / EFFECTS_SCHEMA names (effects/pg_schema.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from effects.ledger_postgres import PostgresLedger
from effects.pg_schema import AnotherDeploymentsLedgerError, in_schema
from effects.ports import EffectId
from effects.power_dialer import PostgresPowerDialerQueue
from effects.settings import EffectsSettings, SettingsError
from tests.effects.helpers import T0, sms

FX = EffectId("fx:welcome:c-100:1:hello:1")  # the same id in both: the ids carry no deployment


@pytest.mark.parametrize("schema", ["Upper", "two words", "a;drop", "x" * 64, ""])
def test_a_schema_that_is_no_plain_lower_case_name_is_refused_naming_the_variable(
    schema: str,
) -> None:
    with pytest.raises(
        SettingsError, match=r"EFFECTS_SCHEMA \(--schema\): a lower-case PostgreSQL name"
    ):
        EffectsSettings(schema=schema).check()


def test_the_schema_is_read_from_the_environment() -> None:
    settings = EffectsSettings.from_env({"EFFECTS_SCHEMA": "deployment_b"})
    assert settings.schema == "deployment_b"


def test_the_schema_joins_the_options_a_url_sets_already() -> None:
    url = "postgresql://u@db/d?options=-c%20statement_timeout%3D5s"
    options = conninfo_to_dict(in_schema(url, "deployment_b"))["options"]
    assert options == "-c statement_timeout=5s -c search_path=deployment_b"
    assert in_schema(url, None) == url


@pytest.fixture
def two_schemas(database_url: str) -> Iterator[tuple[str, str]]:
    names = (f"fx_a_{secrets.token_hex(4)}", f"fx_b_{secrets.token_hex(4)}")
    yield names
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.mark.postgres
async def test_two_deployments_on_one_database_share_no_ledger_row_or_dialer_list(
    database_url: str, two_schemas: tuple[str, str]
) -> None:
    # given deployment A's processor, which carried out an SMS to +12125550101 and put
    # its contact on a user's dialer list, each in its schema (made on opening)
    a_schema, b_schema = two_schemas
    a = PostgresLedger(database_url, "a-1", pool_size=2, schema=a_schema)
    b = PostgresLedger(database_url, "b-1", pool_size=2, schema=b_schema)
    a_dialer = PostgresPowerDialerQueue(database_url, a_schema)
    b_dialer = PostgresPowerDialerQueue(database_url, b_schema)
    for opened in (a, b, a_dialer, b_dialer):
        await opened.open()
    try:
        assert await a.claim(FX, sms(), T0) is True
        assert await a.begin(FX, T0) == 1
        await a.record_sent(FX, "twilio", "SM-A", T0)
        await a_dialer.add(user_id="u-ana", contact_id="c-100", effect_id=FX, at=T0)
        # then B knows no contact by the number A texted (an inbound text to B is not put
        # on A's contact)
        assert await b.contact_for_address("+12125550101") is None
        assert await a.contact_for_address("+12125550101") == "c-1"
        # and when B's processor meets a command under the same effect id, it carries it
        # out itself (not told it was sent by A) and keeps its own dialer lists
        assert await b.claim(FX, sms(), T0) is True
        entry = await b.get(FX)
        assert entry is not None
        assert entry.status == "pending"
        assert await b_dialer.remove(contact_id="c-100", user_id=None) == 0
        assert await a_dialer.users_for("c-100") == ["u-ana"]
    finally:
        for opened in (a, b, a_dialer, b_dialer):
            await opened.close()
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema = ANY(%s) ORDER BY 1, 2",
            (list(two_schemas),),
        ).fetchall()
    expected = ["effect_ledger", "power_dialer_queue", "used_callback_tokens"]
    assert tables == [(s, t) for s in sorted(two_schemas) for t in expected]


@pytest.mark.postgres
async def test_a_ledger_kept_for_one_prefix_is_refused_to_another_naming_both(
    database_url: str, two_schemas: tuple[str, str]
) -> None:
    # given deployment a.'s processor on a schema (as two deployments that forgot --schema)
    schema = two_schemas[0]
    first = PostgresLedger(database_url, "a-1", pool_size=1, schema=schema, serves="a.")
    await first.open()
    try:
        # when deployment b.'s processor opens the same ledger
        other = PostgresLedger(database_url, "b-1", pool_size=1, schema=schema, serves="b.")
        with pytest.raises(AnotherDeploymentsLedgerError) as refused:
            await other.open()
        # then it is refused, saying what to do; a.'s own next processor, and a run over a
        # file (no deployment's), are not
        assert f"schema {schema!r} serves the topic prefix 'a.', not 'b.'" in str(refused.value)
        assert "--schema, EFFECTS_SCHEMA" in str(refused.value)
        for serves in ("a.", None):
            again = PostgresLedger(database_url, "a-2", pool_size=1, schema=schema, serves=serves)
            await again.open()
            await again.close()
    finally:
        await first.close()
