"""Where the HTTP API reads its read models: files loaded into the in-memory projections
(`--history FILE`), or the PostgreSQL projection."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from ops.api_errors import ApiError
from projections.history import HistoryQuery
from projections.loading import ReadModels, load_into
from projections.sequence_contacts import SequenceContactsQuery, contacts_of
from projections.sequence_detail import detail_of


class ReadModelSource(Protocol):
    """What the API reads; each call may block (PostgreSQL), so it runs in a thread."""

    def sequences(self) -> list[dict[str, Any]]: ...

    def sequence(self, sequence_id: str) -> dict[str, Any]:
        """Raises UnknownSequenceError for a sequence the list does not show."""
        ...

    def sequence_contacts(self, query: SequenceContactsQuery) -> dict[str, Any]:
        """Raises UnknownSequenceError for a sequence the list does not show."""
        ...

    def history(self, query: HistoryQuery) -> dict[str, Any] | None: ...

    def contact(self, contact_id: str) -> dict[str, Any] | None: ...


BAD_LINES_SHOWN = 20  # of each file, as the read commands show them


class FileReadModels:
    """The in-memory projections, loaded once from an output stream (`--history FILE`)."""

    def __init__(self, models: ReadModels) -> None:
        self._models = models

    @classmethod
    def load(cls, *paths: Path | str, say: Callable[[str], None] | None = None) -> FileReadModels:
        """The read models of these files, read one after the other; their bad lines told
        to `say` (the first 20 of each file, the rest counted), as the read commands do."""
        models = ReadModels()
        for path in paths:
            errors = load_into(path, *models.all())
            if say is None:
                continue
            for problem in errors[:BAD_LINES_SHOWN]:
                say(problem.describe(path))
            if len(errors) > BAD_LINES_SHOWN:
                say(f"{path}: {len(errors) - BAD_LINES_SHOWN:,} more bad lines not shown")
        return cls(models)

    def sequences(self) -> list[dict[str, Any]]:
        return [row.to_json() for row in self._models.sequences.rows()]

    def sequence(self, sequence_id: str) -> dict[str, Any]:
        listed = self._models.sequences
        return detail_of(listed.catalog, listed.book, sequence_id).to_json()

    def sequence_contacts(self, query: SequenceContactsQuery) -> dict[str, Any]:
        view = self._models.contacts
        return contacts_of(view.catalog, view.book, view.directory, query).to_json()

    def history(self, query: HistoryQuery) -> dict[str, Any] | None:
        page = self._models.history.query(query)
        return None if page is None else page.to_json()

    def contact(self, contact_id: str) -> dict[str, Any] | None:
        summary = self._models.contacts.contact(contact_id)
        return None if summary is None else summary.to_json()


class PostgresReadModels:
    """The PostgreSQL projection; one short autocommit connection per request."""

    def __init__(
        self, database_url: str, schema: str | None = None, serves: str | None = None
    ) -> None:
        """`serves`: the topic prefix this API's commands go to; read models that follow
        another's topics (projections/deployment.py) are not served beside them."""
        self._url = database_url
        self._schema = schema
        self._serves = serves

    def mismatch(self, conn: Any) -> str | None:
        """Why the schema's read models are not this deployment's; None when they may be."""
        from projections import deployment, pg_reads  # noqa: PLC0415

        schema = self._schema or pg_reads.DEFAULT_SCHEMA
        followed = deployment.followed(conn, schema)
        if self._serves is None or followed is None or followed == self._serves:
            return None
        return (
            f"the read models in schema {schema!r} follow the topic prefix {followed!r}, not"
            f" {self._serves!r} (where this API sends commands): give --schema of this"
            " deployment's read models"
        )

    @contextlib.contextmanager
    def _projection(self) -> Iterator[Any]:
        """The projection on a fresh connection; a database that cannot answer is a 503
        saying why (not started, or no read models yet), not a 500."""
        import psycopg  # noqa: PLC0415 - only this adapter needs a database driver

        from projections import pg_reads  # noqa: PLC0415

        schema = self._schema or pg_reads.DEFAULT_SCHEMA
        try:
            with psycopg.connect(self._url, autocommit=True) as conn:
                pg_reads.for_reading(conn)
                if (problem := self.mismatch(conn)) is not None:
                    raise ApiError(503, problem, None)
                yield pg_reads.PostgresReadModels(conn, schema=schema)
        except psycopg.errors.UndefinedTable:
            raise ApiError(
                503,
                f"no read models in schema {schema!r} yet: run `dripstream projections run`",
                None,
            ) from None
        except psycopg.OperationalError as error:
            reason = " ".join(str(error).split())
            raise ApiError(503, f"cannot connect to PostgreSQL: {reason}", None) from None

    def sequences(self) -> list[dict[str, Any]]:
        with self._projection() as projection:
            return [row.to_json() for row in projection.sequence_rows()]

    def sequence(self, sequence_id: str) -> dict[str, Any]:
        with self._projection() as projection:
            return dict(projection.sequence_detail(sequence_id).to_json())

    def sequence_contacts(self, query: SequenceContactsQuery) -> dict[str, Any]:
        with self._projection() as projection:
            return dict(projection.sequence_contacts(query).to_json())

    def history(self, query: HistoryQuery) -> dict[str, Any] | None:
        with self._projection() as projection:
            page = projection.history(query)
        return None if page is None else dict(page.to_json())

    def contact(self, contact_id: str) -> dict[str, Any] | None:
        with self._projection() as projection:
            summary = projection.contact(contact_id)
        return None if summary is None else dict(summary.to_json())
