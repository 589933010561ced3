"""The name, phone and e-mail the read models show for a contact: the latest fact about each
field wins, whatever order the facts arrive in (the live projector reads several topics,
which interleave differently from a file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from projections.pg_rows import CONTACT_COLUMNS, card_row
from projections.state import ContactCard, Directory

T0 = datetime(2028, 3, 2, 22, 41, tzinfo=UTC)

Fact = tuple[str, dict[str, Any], datetime]


def card_after(facts: list[Fact]) -> ContactCard:
    directory = Directory()
    for kind, data, moment in facts:
        directory.fold(kind, "c1", data, moment)
    card = directory.get("c1")
    assert card is not None
    return card


def shown(card: ContactCard) -> tuple[str | None, ...]:
    return (card.first_name, card.last_name, card.name, card.phone, card.email)


def test_a_later_fact_replaces_each_field_it_carries() -> None:
    card = card_after(
        [
            ("contact.created", {"first_name": "Maya", "phone": "+17205550142"}, T0),
            ("contact.updated", {"phone": "+17205550199"}, T0 + timedelta(minutes=1)),
        ]
    )
    assert shown(card) == ("Maya", None, "Maya", "+17205550199", None)


def test_an_older_fact_arriving_late_changes_only_fields_nothing_newer_set() -> None:
    card = card_after(
        [
            ("contact.updated", {"first_name": "Maya"}, T0 + timedelta(minutes=10)),
            ("contact.created", {"first_name": "May", "phone": "+17205550142"}, T0),
            ("contact.updated", {"phone": "+17205550199"}, T0 + timedelta(minutes=5)),
        ]
    )
    # The phone of minute 5 is the latest phone, though a fact of minute 0 filled it first.
    assert shown(card) == ("Maya", None, "Maya", "+17205550199", None)


def test_the_name_joins_the_latest_first_and_last_names_in_either_order() -> None:
    first = ("contact.updated", {"first_name": "Maya"}, T0)
    last = ("contact.updated", {"last_name": "Ortiz"}, T0 + timedelta(minutes=1))
    assert card_after([first, last]).name == "Maya Ortiz"
    assert card_after([last, first]).name == "Maya Ortiz"


def test_a_newer_enrollment_names_the_contact_over_older_facts() -> None:
    enrolled = (
        "enrollment.enrolled",
        {"contact_name": "Maya Ortiz", "contact_phone": "+17205550142"},
        T0 + timedelta(minutes=2),
    )
    older = ("contact.created", {"first_name": "May", "phone": "+17205550100"}, T0)
    newer = ("contact.updated", {"last_name": "Ortiz-Lee"}, T0 + timedelta(minutes=3))
    assert shown(card_after([enrolled, older])) == (
        "May",
        None,
        "Maya Ortiz",
        "+17205550142",
        None,
    )
    assert card_after([enrolled, older, newer]).name == "May Ortiz-Lee"


FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "first_name": st.sampled_from(["Maya", "May", "Ravi"]),
        "last_name": st.sampled_from(["Ortiz", "Rao"]),
        "phone": st.sampled_from(["+17205550142", "+17205550143", "+17205550144"]),
        "email": st.sampled_from(["maya@example.com", "ravi@example.com"]),
    },
)
ENROLLED = st.fixed_dictionaries(
    {},
    optional={
        "contact_name": st.sampled_from(["Maya Ortiz", "Ravi Rao"]),
        "contact_phone": st.sampled_from(["+17205550142", "+17205550145"]),
        "contact_email": st.sampled_from(["maya@example.com", "m@example.com"]),
    },
)
FACT = st.one_of(
    st.tuples(st.sampled_from(["contact.created", "contact.updated"]), FIELDS),
    st.tuples(st.sampled_from(["enrollment.enrolled", "enrollment.rejected"]), ENROLLED),
)


@given(st.lists(FACT, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_the_card_does_not_depend_on_the_order_facts_of_distinct_times_arrive_in(
    facts: list[tuple[str, dict[str, Any]]], shuffle: Any
) -> None:
    timed = [(kind, data, T0 + timedelta(seconds=i)) for i, (kind, data) in enumerate(facts)]
    arrived = list(timed)
    shuffle.shuffle(arrived)
    assert shown(card_after(arrived)) == shown(card_after(timed))


@given(
    st.lists(st.tuples(FACT, st.integers(0, 3)), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_facts_of_the_same_time_give_one_card_in_any_order(
    facts: list[tuple[tuple[str, dict[str, Any]], int]], shuffle: Any
) -> None:
    timed = [(kind, data, T0 + timedelta(seconds=s)) for (kind, data), s in facts]
    arrived = list(timed)
    shuffle.shuffle(arrived)
    assert shown(card_after(arrived)) == shown(card_after(timed))


def test_the_same_fact_again_changes_nothing() -> None:
    fact = ("contact.updated", {"phone": "+17205550100"}, T0)
    other = ("contact.updated", {"phone": "+17205550199"}, T0)
    assert card_after([fact, other, fact]).phone == card_after([other, fact]).phone


def through_rows(batches: list[list[Fact]]) -> ContactCard:
    """As the live projector folds: each batch into the card read back from its row."""
    cards: list[ContactCard] = []
    for batch in batches:
        directory = Directory(cards)
        for kind, data, moment in batch:
            directory.fold(kind, "c1", data, moment)
        card = directory.get("c1")
        assert card is not None
        cards = [ContactCard(*card_row(card)[: len(CONTACT_COLUMNS)])]
    return cards[0]


def test_a_card_read_back_from_its_row_folds_as_one_never_written() -> None:
    early = ("contact.created", {"first_name": "Maya"}, T0)
    phone = ("contact.updated", {"phone": "+17205550199"}, T0 + timedelta(hours=2))
    late = ("contact.updated", {"first_name": "May"}, T0 + timedelta(hours=1))
    assert through_rows([[early, phone], [late]]).name == card_after([early, phone, late]).name
    assert card_after([early, phone, late]).name == "May"


@given(
    st.lists(st.tuples(FACT, st.integers(0, 3)), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
    st.integers(1, 4),
)
def test_batches_read_back_from_rows_give_the_card_of_one_fold(
    facts: list[tuple[tuple[str, dict[str, Any]], int]], shuffle: Any, size: int
) -> None:
    timed = [(kind, data, T0 + timedelta(seconds=s)) for (kind, data), s in facts]
    arrived = list(timed)
    shuffle.shuffle(arrived)
    batches = [arrived[i : i + size] for i in range(0, len(arrived), size)]
    assert shown(through_rows(batches)) == shown(card_after(timed))
