"""The `dlq` topic's record: a rejected Kafka record whole, where it was read, and why.

One shape whoever rejects the record (the engine worker, the effects worker), so a
platform engineer reads one kind of letter (README, "Topics")."""

from __future__ import annotations

from dataclasses import dataclass

import orjson


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
        reason (as in `replay --dlq`: the field has a key of its own)."""
        return orjson.dumps(
            {
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "key": self.text_key,
                "field": self.field,
                "reason": self.reason,
                "value": self.value.decode("utf-8", "replace"),
                "value_hex": self.value.hex(),
            }
        )
