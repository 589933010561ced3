"""eventsourcing stores an aggregate's events together with the Kafka position that caused
them (a `Tracking`), in one transaction, on PostgreSQL and on SQLite; a redelivered record
is recognised and cannot be recorded twice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, ProcessRecorder, Recording, Tracking
from psycopg.conninfo import conninfo_to_dict

CONTACTS_3 = "dripstream.contacts:3"  # topic:partition, the tracking's application name


@dataclass(frozen=True, kw_only=True)
class ContactRecord:
    """A decoded input record and where it was read."""

    topic: str
    partition: int
    offset: int
    contact_id: str
    action: str  # "enroll" or "advance"

    @property
    def tracking(self) -> Tracking:
        return Tracking(
            application_name=f"{self.topic}:{self.partition}", notification_id=self.offset
        )


class Enrollment(Aggregate):
    @staticmethod
    def create_id(contact_id: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"dripstream:enrollment:{contact_id}")

    @event("Enrolled")
    def __init__(self, contact_id: str) -> None:
        self.contact_id = contact_id
        self.steps_done = 0

    @event("StepDone")
    def advance(self) -> None:
        self.steps_done += 1


class EnrollmentStore(Application[UUID]):
    """Keeps enrollments; every write carries the position of the record that caused it."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        self.recorder: ProcessRecorder

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    def enrollment(self, contact_id: str) -> Enrollment:
        found: object = self.repository.get(Enrollment.create_id(contact_id))
        assert isinstance(found, Enrollment)
        return found

    def record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        """The collected events and the tracking go to the recorder in one transaction."""
        return self.events.put(processing_event.events, tracking=processing_event.tracking)

    def handle(self, record: ContactRecord) -> None:
        processing_event = ProcessingEvent[UUID](tracking=record.tracking)
        if record.action == "enroll":
            processing_event.collect_events(Enrollment(record.contact_id))
        else:
            enrollment = self.enrollment(record.contact_id)
            enrollment.advance()
            processing_event.collect_events(enrollment)
        self.record(processing_event)


def contact_record(offset: int, action: str, contact_id: str = "c-1") -> ContactRecord:
    return ContactRecord(
        topic="dripstream.contacts",
        partition=3,
        offset=offset,
        contact_id=contact_id,
        action=action,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The eventsourcing environment of an empty store: a new SQLite file, or a new
    PostgreSQL schema."""
    if request.param == "sqlite":
        yield {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "events.sqlite3"),
        }
        return
    database_url: str = request.getfixturevalue("database_url")
    schema: str = request.getfixturevalue("pg_schema")
    params = conninfo_to_dict(database_url)
    yield {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params["dbname"]),
        "POSTGRES_HOST": str(params["host"]),
        "POSTGRES_PORT": str(params.get("port", 5432)),
        "POSTGRES_USER": str(params["user"]),
        "POSTGRES_PASSWORD": str(params["password"]),
        "POSTGRES_SCHEMA": schema,
    }


def test_events_and_their_position_are_stored_together(store_env: dict[str, str]) -> None:
    # given an enrollment recorded from offsets 0 and 1 of partition 3
    with EnrollmentStore(store_env) as store:
        store.handle(contact_record(0, "enroll"))
        store.handle(contact_record(1, "advance"))

    # when the store is opened again
    with EnrollmentStore(store_env) as reopened:
        enrollment = reopened.enrollment("c-1")
        position = reopened.recorder.max_tracking_id(CONTACTS_3)
        other_partition = reopened.recorder.max_tracking_id("dripstream.contacts:4")
        notifications = reopened.recorder.select_notifications(start=None, limit=10)

    # then the aggregate and the position it answers are both there
    assert (enrollment.contact_id, enrollment.steps_done, enrollment.version) == ("c-1", 1, 2)
    assert position == 1
    assert other_partition is None
    assert [n.topic.rsplit(".", 1)[-1] for n in notifications] == ["Enrolled", "StepDone"]


def test_a_redelivered_record_is_detected_and_not_recorded_twice(
    store_env: dict[str, str],
) -> None:
    with EnrollmentStore(store_env) as store:
        # given offsets 0 and 1 already recorded
        store.handle(contact_record(0, "enroll"))
        store.handle(contact_record(1, "advance"))

        # when offset 1 is delivered again (a rebalance, a crash before the Kafka commit)
        redelivered = contact_record(1, "advance")

        # then the store knows it, and an attempt to record it anyway changes nothing
        assert store.recorder.has_tracking_id(CONTACTS_3, redelivered.offset)
        assert store.recorder.has_tracking_id(CONTACTS_3, 0)
        assert not store.recorder.has_tracking_id(CONTACTS_3, 2)
        with pytest.raises(IntegrityError):
            store.handle(redelivered)
        assert store.enrollment("c-1").version == 2
        assert store.recorder.max_notification_id() == 2
        assert store.recorder.max_tracking_id(CONTACTS_3) == 1


def test_a_rejected_write_records_no_position(store_env: dict[str, str]) -> None:
    with EnrollmentStore(store_env) as store:
        # given an enrollment at version 2 (offsets 0 and 1), and a copy of it read now
        store.handle(contact_record(0, "enroll"))
        store.handle(contact_record(1, "advance"))
        stale = store.enrollment("c-1")

        # when offset 2 advances it, and then offset 3 is decided from the stale copy
        store.handle(contact_record(2, "advance"))
        stale.advance()
        conflicting = ProcessingEvent[UUID](tracking=contact_record(3, "advance").tracking)
        conflicting.collect_events(stale)

        # then the conflicting events are refused and offset 3 is not marked as done,
        # so the record is decided again from the current state
        with pytest.raises(IntegrityError):
            store.record(conflicting)
        assert store.recorder.max_tracking_id(CONTACTS_3) == 2
        assert store.enrollment("c-1").version == 3
