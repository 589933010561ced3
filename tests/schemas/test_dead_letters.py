"""A `dlq` letter holds the rejected record whole (as text and hex, its key too), or, when
that would not fit a Kafka record, its beginning, its length and its SHA-256."""

from __future__ import annotations

import hashlib

import jsonschema
import orjson
import pytest

from schemas.checking import schema_document
from schemas.dead_letters import KEPT_BYTES, LETTER_BUDGET, RejectedRecord
from streams.relay import MAX_RECORD_BYTES


def _letter(value: bytes, key: bytes | None = b"c-1") -> dict[str, object]:
    record = RejectedRecord("p.contacts", 3, 41, key, value, "event", "not valid JSON")
    return _published(record)


def _published(record: RejectedRecord) -> dict[str, object]:
    """The record's letter, checked to fit a Kafka record and to match dead_letter.schema.json."""
    raw = record.letter()
    assert len(raw) <= LETTER_BUDGET
    letter: dict[str, object] = orjson.loads(raw)
    jsonschema.validate(letter, schema_document("dead_letter.schema.json"))
    return letter


def test_a_letter_holds_the_record_whole_with_its_place_and_reason() -> None:
    letter = _letter(b"{oops")
    assert letter == {
        "topic": "p.contacts",
        "partition": 3,
        "offset": 41,
        "key": "c-1",
        "key_hex": b"c-1".hex(),
        "field": "event",
        "reason": "not valid JSON",
        "value": "{oops",
        "value_hex": b"{oops".hex(),
    }


def test_a_key_that_is_no_utf8_is_kept_in_hex() -> None:
    letter = _letter(b"{", key=b"\xff\xfe")
    assert letter["key"] == "\ufffd\ufffd"
    assert letter["key_hex"] == "fffe"
    assert _letter(b"{", key=None)["key_hex"] is None


def test_an_empty_key_is_told_apart_from_none() -> None:
    # null means "no key" (dead_letter.schema.json); an empty key is a key
    letter = _letter(b"{", key=b"")
    assert (letter["key"], letter["key_hex"]) == ("", "")
    assert _letter(b"{", key=None)["key"] is None


def test_a_key_holding_nul_is_written_without_it_and_kept_in_hex() -> None:
    # PostgreSQL text (the outbox's key column) cannot hold U+0000
    record = RejectedRecord("p.contacts", 0, 7, b"c\x00k", b"not json", "event", "not valid JSON")
    assert record.text_key == "c\ufffdk"
    letter = _published(record)
    assert (letter["key"], letter["key_hex"]) == ("c\ufffdk", b"c\x00k".hex())


def test_a_record_too_large_for_a_letter_is_cut_and_named_by_length_and_hash() -> None:
    # 400 KB would weigh 1.2 MB as text and hex: more than the broker takes by default.
    value = b"\x00" + b"x" * 400_000
    letter = _letter(value)
    assert letter["truncated"] is True
    assert letter["value_bytes"] == len(value)
    assert letter["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert letter["value_hex"] == value[:KEPT_BYTES].hex()


def test_a_record_of_a_quarter_of_the_budget_goes_whole() -> None:
    value = b"y" * (LETTER_BUDGET // 4)
    letter = _letter(value)
    assert "truncated" not in letter
    assert letter["value"] == value.decode()


def test_a_huge_key_and_a_reason_quoting_the_record_are_cut_too() -> None:
    # A reason can echo the record (an unknown type is quoted), a key can be anything.
    key = b"k" * 300_000
    record = RejectedRecord(
        "p.contacts", 0, 9, key, b"{}", "type", "unknown event type " + "t" * 900_000
    )
    letter = _published(record)
    assert record.record_key == key[:1024]
    assert letter["key"] == "k" * 1024
    assert letter["key_bytes"] == len(key)
    assert letter["key_sha256"] == hashlib.sha256(key).hexdigest()
    assert letter["reason"].startswith("unknown event type ttt")
    assert letter["reason"].endswith("(900019 characters)")
    assert letter["value"] == "{}"


def test_the_published_schema_refuses_a_letter_without_its_reason() -> None:
    letter = _letter(b"{oops")
    del letter["reason"]
    with pytest.raises(jsonschema.ValidationError, match="'reason' is a required property"):
        jsonschema.validate(letter, schema_document("dead_letter.schema.json"))


def test_a_records_headers_go_with_it_in_order_cut_like_a_key() -> None:
    # In CloudEvents binary mode the event's attributes are in the headers: without them
    # a letter of one could not be rebuilt into the event.
    headers = (
        ("ce_specversion", b"1.0"),
        ("ce_type", b"contact.tag_added"),
        ("ce_type", b"again"),
        ("bin", b"\xff\x00"),
        ("big", b"x" * 2000),
        ("n" * 300, b""),
    )
    record = RejectedRecord("p.contacts", 0, 7, b"c-1", b"{}", "event", "binary mode", headers)

    kept = _published(record)["headers"]

    assert kept == [
        {"name": "ce_specversion", "value": "1.0", "value_hex": b"1.0".hex()},
        {"name": "ce_type", "value": "contact.tag_added", "value_hex": b"contact.tag_added".hex()},
        {"name": "ce_type", "value": "again", "value_hex": b"again".hex()},
        {"name": "bin", "value": "\ufffd\ufffd", "value_hex": "ff00"},
        {"name": "big", "value": "x" * 256, "value_hex": "78" * 256, "value_bytes": 2000},
        {"name": "n" * 256, "value": "", "value_hex": ""},
    ]


def test_a_header_name_is_cut_to_256_bytes_not_characters() -> None:
    # 100 three-byte characters: 85 of them fit, and the first byte of the 86th is left out
    record = RejectedRecord("p.contacts", 0, 7, b"c-1", b"{}", "event", "x", (("€" * 100, b""),))

    [kept] = _published(record)["headers"]

    assert kept["name"] == "€" * 85


def test_a_record_without_headers_has_no_headers_key() -> None:
    assert "headers" not in _letter(b"{oops")


def test_at_most_16_headers_are_kept() -> None:
    headers = tuple((f"h{n}", b"v") for n in range(40))
    record = RejectedRecord("p.contacts", 0, 7, None, b"{}", "event", "x", headers)
    kept = _published(record)["headers"]
    assert isinstance(kept, list)
    assert [h["name"] for h in kept] == [f"h{n}" for n in range(16)]


def test_the_worst_letter_fits_its_budget_and_the_relays_record() -> None:
    # Every byte a control character (six bytes in JSON), everything as long as it goes.
    worst = b"\x01" * 2_000_000
    headers = tuple(("\x01" * 1000, worst[:1000]) for _ in range(40))
    record = RejectedRecord(
        "p.contacts", 0, 7, worst[:5000], worst, "event", "\x01" * 5000, headers
    )
    assert len(record.letter()) <= LETTER_BUDGET < MAX_RECORD_BYTES
    _published(record)
