"""The labels a lead e-mail writes its fields under ("Phone Number", "Buyer Email", "Your
First Name" …) and the field each names: the vocabulary of aggregates/intake.py."""

from __future__ import annotations

import re
from typing import Final

LABELS: Final[dict[str, tuple[str, ...]]] = {
    # Spanish forms too (US businesses serve them): Nombre, Apellido, Teléfono, Correo.
    "first_name": ("firstname", "fname", "first", "givenname", "forename"),
    "last_name": ("lastname", "lname", "last", "surname", "familyname", "apellido", "apellidos"),
    "name": (
        "name",
        "fullname",
        "contactname",
        "leadname",
        "yourname",
        "customername",
        "clientname",
        "nombre",  # a whole name as often as a given one: split as a name is
        "nombrecompleto",
    ),
    "phone": (
        "phone",
        "phonenumber",
        "phoneno",
        "mobile",
        "mobilephone",
        "mobilenumber",
        "cell",
        "cellphone",
        "cellnumber",
        "telephone",
        "telephonenumber",
        "tel",
        "ph",
        "primaryphone",
        "contactnumber",
        "contactphone",
        "sms",
        "whatsapp",
        "teléfono",
        "telefono",
        "celular",
        "móvil",
        "movil",
    ),
    "email": (
        "email",
        "emailaddress",
        "youremail",
        "contactemail",
        "primaryemail",
        "mail",
        "correo",
        "correoelectrónico",
        "correoelectronico",
    ),
    "state": ("state", "province", "region", "stateprovince", "stateregion"),
    "lead_source": ("leadsource", "source", "utmsource"),
    "timezone": ("timezone", "tz"),
    "notes": (
        "message",
        "comments",
        "comment",
        "notes",
        "note",
        "questions",
        "question",
        "details",
        "inquiry",
        "enquiry",
        "additionalinformation",
        "additionalinfo",
    ),
}
_FIELD_OF_KEY: Final[dict[str, str]] = {
    key: field for field, keys in LABELS.items() for key in keys
}
# Labels read after their numbering and qualifiers are dropped: only ways to reach the lead,
# so that "Home State" or "Contact Preference" never turn into something they do not say.
_REACH_OF_KEY: Final[dict[str, str]] = {
    key: field for key, field in _FIELD_OF_KEY.items() if field in ("phone", "email")
}
# Words at the end of a label that number it or name its form: "Phone Number 2", "Email Id".
_LABEL_NUMBERING: Final = frozenset({"number", "no", "num", "nbr", "id", "address", "addr"})
# Words at the front of a label that say whose, which or what kind of phone or e-mail it is.
_LABEL_QUALIFIERS: Final = frozenset(
    {
        "your",
        "best",
        "preferred",
        "primary",
        "main",
        "alternate",
        "alternative",
        "alt",
        "secondary",
        "other",
        "contact",
        "daytime",
        "day",
        "evening",
        "night",
        "work",
        "office",
        "business",
        "home",
        "personal",
        "private",
        "mobile",
        "cell",
        "cellular",
    }
)
# Words at the front of a label that say the field is the lead's: "Buyer Phone", "Client Name".
_PERSON_QUALIFIERS: Final = frozenset(
    {
        "lead",
        "buyer",
        "seller",
        "customer",
        "client",
        "prospect",
        "guest",
        "renter",
        "tenant",
        "homeowner",
        "applicant",
        "borrower",
        "patient",
        "visitor",
    }
)
_PERSON_FIELDS: Final = frozenset({"first_name", "last_name", "name", "phone", "email"})
_LABEL_WORD: Final = re.compile(r"[^\W_]+")
_CAMEL_HUMP: Final = re.compile(r"(?<=[a-z])(?=[A-Z])")
_E_MAIL: Final = re.compile(r"\be[\s_-]?mail", re.IGNORECASE)
REMARK: Final = re.compile(r"\([^)]*\)")
# "Contact #" is "Contact Number", as "Phone #" is "Phone Number".
_NUMBER_SIGN: Final = re.compile(r"\s*#\s*$")
NOT_ALNUM: Final = re.compile(r"[\W_]+")


# "Name (First)", "Name (Last Name)": a form builder's two halves of one name field.
_NAME_HALF: Final = re.compile(r"^\s*name\s*\(\s*(first|last)(?:\s*name)?\s*\)\s*$", re.IGNORECASE)


def field_of(key: str) -> str | None:
    """The field a label names (aggregates/intake.py's notes), or None for one not known."""
    half = _NAME_HALF.match(key)
    if half is not None:
        return f"{half[1].casefold()}_name"
    bare = _NUMBER_SIGN.sub(" number", REMARK.sub("", key))
    field = _FIELD_OF_KEY.get(NOT_ALNUM.sub("", bare.casefold()))
    if field is not None:
        return field
    words = _LABEL_WORD.findall(_E_MAIL.sub("email", _CAMEL_HUMP.sub(" ", bare)).casefold())
    if len(words) > 1 and words[0] in _PERSON_QUALIFIERS:
        # "Buyer Phone Number" is the lead's "Phone Number" (never the lead's "Source").
        field = field_of(" ".join(words[1:]))
        if field in _PERSON_FIELDS:
            return field
    if words[:1] == ["your"]:  # a form addressing the lead: "Your First Name" is "First Name"
        field = _FIELD_OF_KEY.get("".join(words[1:]))
        if field is not None:
            return field
    core = list(words)
    while core and (core[-1].isdigit() or core[-1] in _LABEL_NUMBERING):
        core.pop()
    # Drop the qualifiers one by one, each time trying the label with and without numbering
    # ("Best Contact Number" is "contact number", "Phone 1" is "phone").
    while core:
        field = _REACH_OF_KEY.get("".join(words)) or _REACH_OF_KEY.get("".join(core))
        if field is not None or core[0] not in _LABEL_QUALIFIERS:
            return field
        words, core = words[1:], core[1:]
    return None


# Words at the front of a phone or e-mail label that make it a second way to reach someone,
# or someone else's: "Office Phone", "Alternate Email" (the plain "Phone" comes first).
# ("Work" and "Business" are not among them: a business's lead gives those as its own.)
_SECONDARY_QUALIFIERS: Final = frozenset(
    {"alternate", "alternative", "alt", "secondary", "other", "office"}
)


def is_secondary(key: str) -> bool:
    """Whether a label names a second way to reach someone (see _SECONDARY_QUALIFIERS)."""
    words = _LABEL_WORD.findall(_CAMEL_HUMP.sub(" ", key).casefold())
    return bool(words) and words[0] in _SECONDARY_QUALIFIERS


def is_label(cell: str) -> bool:
    """Whether a cell or line holds a known label and nothing else: no value after a colon,
    no number (which `field_of` would take for the label's numbering: "Cell 720-555-0142")."""
    text = cell.rstrip(": ")
    if ":" in text or sum(c.isdigit() for c in text) > 2:
        return False
    return field_of(text) is not None
