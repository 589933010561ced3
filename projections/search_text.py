"""What a History search compares: the text typed and a contact's name, phone and e-mail,
folded alike, so `jose` finds José, `strasse` Straße, `full` the word in full-width
letters, and a name stored decomposed (NFD) is found as one stored composed. Folded in
Python for the read models of a file and for PostgreSQL's (written with each contact's row),
so the two never differ."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Between a contact's fields in its folded text: no search holds it, so none matches
# across two fields.
SEPARATOR = "\n"


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """`text` case-folded, compatibility-decomposed, without its accents."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def searchable(*fields: str | None) -> str | None:
    """A contact's fields folded into the one text a search looks in; None for none."""
    folded = [fold(field) for field in fields if field]
    return SEPARATOR.join(folded) if folded else None
