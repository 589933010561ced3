"""Building the in-memory read models from an output file (a replay's `--out`, a topic dump)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from projections.base import Projection
from projections.contacts_view import ContactsView
from projections.history import HistoryReport
from projections.sequences_list import SequencesList
from projections.stream import LineError, Positioned, read_stream


@dataclass(slots=True)
class ReadModels:
    sequences: SequencesList = field(default_factory=SequencesList)
    history: HistoryReport = field(default_factory=HistoryReport)
    contacts: ContactsView = field(default_factory=ContactsView)

    def all(self) -> tuple[Projection, ...]:
        return (self.sequences, self.history, self.contacts)


def load_into(path: Path | str, *projections: Projection) -> list[LineError]:
    """Feed every event of the file to each projection (each line parsed once). Lines that are
    not events are returned, in order; the rest still load."""
    errors: list[LineError] = []
    for item in read_stream(path):
        if isinstance(item, Positioned):
            for projection in projections:
                projection.apply_event(item.event)
        else:
            errors.append(item)
    return errors


def load_file(*paths: Path | str) -> tuple[ReadModels, list[LineError]]:
    """The read models of these files, read one after the other, and their bad lines."""
    models = ReadModels()
    return models, [error for path in paths for error in load_into(path, *models.all())]
