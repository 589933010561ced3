"""`intake_address: auto` (the seed's "Install Email Service: a unique email address is
set"): the engine sets each such sequence an address of its own at the account's domain."""

from __future__ import annotations

from typing import Any

import pytest

from aggregates.intake_addresses import own_intake_address
from schemas.definitions import DefinitionRejected, validate_definition_document
from tests.engine.helpers import ACCOUNT, decide, definitions, event, sequence

T0 = "2027-07-06T14:00:00Z"
DOMAIN = "intake.example.com"
WITH_DOMAIN = {**ACCOUNT, "intake_domain": DOMAIN}
AUTO = sequence(intake_address="auto", triggers=[])


def lead(to: str) -> dict[str, Any]:
    body = "First Name: Jo\nEmail: jo@example.com"
    return event("lead.email_received", T0, subject="intake", to=to, body=body)


def test_auto_sets_a_unique_address_that_takes_leads() -> None:
    other = sequence(id="other", intake_address="auto", triggers=[])
    out = decide(definitions(AUTO, other, account=WITH_DOMAIN), [])
    addresses = {
        e["data"]["sequence_id"]: e["data"]["intake_address"] for e in out.of("sequence.defined")
    }
    assert addresses["seq"] == own_intake_address("seq", DOMAIN)
    assert addresses["seq"].startswith("seq-")
    assert addresses["seq"].endswith("@" + DOMAIN)
    assert addresses["seq"] != addresses["other"]
    # the published definition holds the address set, for `sequences show`
    defined = out.one("sequence.defined", sequence_id="seq")["data"]
    assert defined["definition"]["intake_address"] == addresses["seq"]
    # and a lead mailed to it (in any case) is enrolled in that sequence
    out = decide(definitions(AUTO, other, account=WITH_DOMAIN), [lead(addresses["seq"].upper())])
    enrolled = out.one("enrollment.enrolled")["data"]
    assert (enrolled["sequence_id"], enrolled["via"]) == ("seq", "intake")


def test_two_ids_differing_in_case_get_different_addresses() -> None:
    assert own_intake_address("Leads", DOMAIN) != own_intake_address("leads", DOMAIN)


@pytest.mark.parametrize("odd_id", ["a,b", "we@lcome", "promo(1)", 'q"t', "<x>", "@@"])
def test_an_id_with_characters_no_address_holds_still_gets_one_that_takes_leads(
    odd_id: str,
) -> None:
    seq = sequence(id=odd_id, intake_address="auto", triggers=[])
    address = own_intake_address(odd_id, DOMAIN)
    assert address.count("@") == 1
    out = decide(definitions(seq, account=WITH_DOMAIN), [lead(address)])
    assert out.of("lead.rejected") == []
    assert out.one("enrollment.enrolled")["data"]["sequence_id"] == odd_id


def test_auto_without_an_intake_domain_loads_invalid_naming_it() -> None:
    out = decide(definitions(AUTO), [])
    defined = out.one("sequence.defined")["data"]
    assert defined["status"] == "invalid"
    assert defined["problems"] == ["intake_address: auto needs the account's intake_domain"]
    assert defined["intake_address"] is None
    assert defined["definition"]["intake_address"] == "auto"  # what the problem speaks of


def test_a_copy_of_an_auto_sequence_gets_an_address_of_its_own() -> None:
    copy = event(
        "sequence.copy_requested", T0, subject="sequences", sequence_id="seq", new_id="seq-b"
    )
    out = decide(definitions(AUTO, account=WITH_DOMAIN), [copy])
    copied = out.one("sequence.defined", sequence_id="seq-b")["data"]
    assert copied["intake_address"] == own_intake_address("seq-b", DOMAIN)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"intake_address": "automatic"}, "intake_address"),
        ({"account": {"intake_domain": "no-dot"}}, "account.intake_domain"),
    ],
)
def test_a_bad_auto_or_domain_is_refused_naming_the_key(change: dict[str, Any], key: str) -> None:
    doc: dict[str, Any] = {"account": {**WITH_DOMAIN}, "sequences": [dict(AUTO)]}
    if "account" in change:
        doc["account"].update(change["account"])
    else:
        doc["sequences"][0].update(change)
    with pytest.raises(DefinitionRejected) as refused:
        validate_definition_document(doc)
    assert refused.value.key.endswith(key)


def test_an_id_an_address_holds_keeps_its_characters_and_the_address_stays_put() -> None:
    # pinned: an address handed out must not change with a new version of the engine
    assert own_intake_address("welcome_new", DOMAIN) == "welcome_new-3c645cf7@" + DOMAIN
    assert own_intake_address("promo.2027", DOMAIN).startswith("promo.2027-")


def test_a_long_id_gives_a_local_part_an_address_can_hold() -> None:
    local = own_intake_address("x" * 63, DOMAIN).split("@")[0]
    assert len(local) <= 64
    assert own_intake_address("x" * 63, DOMAIN) != own_intake_address("x" * 62, DOMAIN)
