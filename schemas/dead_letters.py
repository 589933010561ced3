"""The `dlq` topic's record: a rejected Kafka record whole, where it was read, and why.

One shape whoever rejects the record (the engine worker, the effects worker), so a
platform engineer reads one kind of letter (README, "Topics")."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

# The most a letter may weigh: it must fit one of the relay's record batches (512 KiB) and
# the broker's default 1 MB message limit. The value appears twice (text and hex), and
# JSON may write a byte of text as six (`\u0000`), so a record of more than LETTER_BUDGET
# / 8 bytes may not fit whole: its letter then carries the first KEPT_BYTES of it, says
# `truncated`, and names the whole by length and SHA-256 (the record itself is still on
# its topic, at the partition and offset the letter gives, for as long as that keeps it).
LETTER_BUDGET = 500 * 1024  # under the relay's record limit (streams/relay.py)
KEPT_BYTES = 48 * 1024
# A key and a reason are short in any sane record, but both can echo what the record holds
# (a reason quotes a type or a subject), so each is cut too: the key to KEPT_KEY_BYTES
# (named then by length and SHA-256), the reason to KEPT_REASON characters.
KEPT_KEY_BYTES = 1024
KEPT_REASON = 2048
# The record's headers go too (in binary mode they hold the event's attributes): the first
# KEPT_HEADERS, each name and value cut to KEPT_HEADER_BYTES. With the value cut to
# KEPT_BYTES, the key and the reason, the worst letter (every byte a control character,
# six in JSON) stays under LETTER_BUDGET: about 470 KB.
KEPT_HEADERS = 16
KEPT_HEADER_BYTES = 256

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    field: str
    reason: str
    headers: Headers = ()

    @property
    def letter_id(self) -> str:
        """Unique per record read: a letter written twice (a redelivery) is one letter."""
        return f"dlq:{self.topic}:{self.partition}:{self.offset}"

    @property
    def record_key(self) -> bytes | None:
        """The letter's own Kafka key: the rejected record's, cut to KEPT_KEY_BYTES."""
        return None if self.key is None else self.key[:KEPT_KEY_BYTES]

    @property
    def text_key(self) -> str | None:
        """The key as text, for the letter and its outbox row: bytes that are not UTF-8 and
        NUL (which PostgreSQL text cannot hold) become U+FFFD; `key_hex` keeps them exact."""
        key = self.record_key
        return key.decode("utf-8", "replace").replace("\x00", "\ufffd") if key is not None else None

    def letter(self) -> bytes:
        """The record's bytes as text and hex, its place, the field at fault and the bare
        reason (as in `replay --dlq`: the field has a key of its own); the key as text and
        hex (a key need not be UTF-8). Cut to its first KEPT_BYTES when it would not fit."""
        whole = self._letter(self.value)
        if len(whole) <= LETTER_BUDGET:
            return whole
        return self._letter(
            self.value[:KEPT_BYTES],
            truncated=True,
            value_bytes=len(self.value),
            value_sha256=hashlib.sha256(self.value).hexdigest(),
        )

    def _letter(self, value: bytes, **more: object) -> bytes:
        key = self.record_key
        if self.key is not None and key != self.key:
            more = {
                **more,
                "key_bytes": len(self.key),
                "key_sha256": hashlib.sha256(self.key).hexdigest(),
            }
        reason = self.reason
        if len(reason) > KEPT_REASON:
            reason = f"{reason[:KEPT_REASON]}... ({len(self.reason)} characters)"
        return orjson.dumps(
            {
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "key": self.text_key,
                "key_hex": key.hex() if key is not None else None,
                "field": self.field,
                "reason": reason,
                "value": value.decode("utf-8", "replace"),
                "value_hex": value.hex(),
                **({"headers": self._headers()} if self.headers else {}),
                **more,
            }
        )

    def _headers(self) -> list[dict[str, object]]:
        """Each header as text and hex, in the record's order (names may repeat)."""
        kept: list[dict[str, object]] = []
        for name, value in self.headers[:KEPT_HEADERS]:
            shown = value[:KEPT_HEADER_BYTES]
            kept.append(
                {
                    "name": _first_bytes(name).replace("\x00", "\ufffd"),
                    "value": shown.decode("utf-8", "replace").replace("\x00", "\ufffd"),
                    "value_hex": shown.hex(),
                    **({"value_bytes": len(value)} if len(shown) < len(value) else {}),
                }
            )
        return kept


def _first_bytes(name: str) -> str:
    """The name's first KEPT_HEADER_BYTES bytes of UTF-8, as the value's are counted (a
    character cut in two is left out)."""
    return name.encode("utf-8", "surrogatepass")[:KEPT_HEADER_BYTES].decode("utf-8", "ignore")
