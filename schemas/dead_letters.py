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
LETTER_BUDGET = 512 * 1024
KEPT_BYTES = 48 * 1024


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    field: str
    reason: str

    @property
    def letter_id(self) -> str:
        """Unique per record read: a letter written twice (a redelivery) is one letter."""
        return f"dlq:{self.topic}:{self.partition}:{self.offset}"

    @property
    def text_key(self) -> str | None:
        return self.key.decode("utf-8", "replace") if self.key else None

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
        return orjson.dumps(
            {
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "key": self.text_key,
                "key_hex": self.key.hex() if self.key is not None else None,
                "field": self.field,
                "reason": self.reason,
                "value": value.decode("utf-8", "replace"),
                "value_hex": value.hex(),
                **more,
            }
        )
