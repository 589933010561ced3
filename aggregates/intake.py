"""Lead intake by e-mail: a lead-form e-mail becomes the fields of a new contact.

Reading rules (the "advanced algorithm" of the seed, kept predictable):

* HTML bodies become lines: ``<br>`` and block ends break lines, a table row of two cells
  ``<td>Key</td><td>Value</td>`` becomes ``Key: Value``, and so does ``<dt>Key</dt>
  <dd>Value</dd>``; a row of three or more cells followed by a row of as many pairs them as
  a header of labels and its values (a form mailer's column layout), and so does a row of two
  known labels over a row of two values; a cell holding only ``:`` is dropped, and a row of
  known label, value, label, value … is read pair by pair; entities are decoded,
  ``<script>``, ``<style>`` and ``<head>`` are dropped, ``<blockquote>`` content counts as
  quoted.
* A body that is one JSON object (a webhook-to-mail bridge) becomes a ``key: value`` line
  for each of its text and number values, nested objects included.
* A field is a ``Key: value`` line, perhaps bulleted or numbered (``1. Name:``); ``Key =
  value``, ``Key - value`` (a dash or en/em dash between spaces) and ``Key<TAB>value`` are
  read too, but only for the labels this module knows. Keys compare
  case-insensitively with everything but letters and digits removed, and any parenthesised
  remark and leading "your" dropped ("Phone (mobile)" is "phone", "Your First Name" is
  "first name"). A label the table does not hold is still a phone or e-mail label when what
  is left after dropping its numbering at the end ("number", "no", "#", "id", "address",
  "1") and its qualifiers at the front ("best", "primary", "contact", "daytime", "work",
  "home", "mobile", "cell" …) is one: "Your Phone Number", "Work Email", "Phone 1", "Email
  Id". "Phone Type", "Email Opt In", "Address" and "Contact Preference" stay other fields.
  The lead's role in front of a name, phone or e-mail label is dropped too ("Buyer Phone",
  "Client Email", "Lead Name"). A known key with nothing after it, or written alone on its
  line ("Phone", "--- Name ---", a table cell of its own; only where two or more labels
  stand so, as a form writes them, not one in a signature), takes the next line as its
  value.
  The first usable value of a field wins: a value that is no phone or address never hides a
  good one, and no address, phone number or sentence is a name. Before that, each field's
  values are ranked: when the first block (lines between blank lines) holding a name also
  holds a phone or e-mail, its values come first (the agent a vendor sent the lead to, or
  the site's own phone, written above the lead's block, is not the lead's), and a phone or
  e-mail under a label of a second way ("Office Phone", "Alternate Email") comes after a
  plain one. A name written with an address or number ("Nan Hu <nan@…>", "John Smith (212)
  555-0100") is the name without them, and they are the last values of their own fields.
  "Name (First)" and "Name (Last)" are the first and last name; "Mr. Smith" is a family
  name alone.
* Several fields on one line, split by ``|`` or ``;`` ("Phone: … | Email: …"), are read as
  one line each; a ``|`` or ``;`` not followed by a field stays in the value. So are known
  fields after a comma or a space ("Name: Lu Ma, Phone: …", or a form flattened to "Name: Lu
  Ma Phone: …"), except in a message; a colon after any other word stays in the value.
  A table row whose cells each hold a whole field ("Name: Dee" | "Phone: …") is a line each.
* Quoted lines (starting with ``>``) are noise, and so is a signature (from a ``--`` line,
  or a sign-off below the fields that a field line does not follow, to the next
  forwarded-message marker). When the body holds a forwarded message (a marker line, or a
  ``From:`` line with an address and ``Subject:`` and ``Sent:``/``To:``/``Cc:`` lines
  under it, as Outlook writes them), the
  forwarder's note above the first marker is ignored. If that leaves no phone or e-mail, the
  quoted lines and then the forwarder's note are tried, in that order.
* Message/Comments-like fields become ``notes``, followed by any other ``Key: value`` field
  (Zip, City, Budget …) as ``Key: value`` lines; e-mail headers of a forwarded message
  (From, To, Date, Subject …) are not fields.
* Phone: E.164 via ``phonenumbers`` (region US); e-mail: the address inside the value,
  lower-cased, with a sane shape; state: two letters are upper-cased; time zone: an IANA
  name, or a US zone word ("Eastern", "PST") mapped to one; otherwise dropped.
* A ``From: Name <address>`` line among the first three of a body that is no forward (a
  form mailer's template, as Contact Form 7's) names the lead: it is the lead when the body
  has no other field, and gives the name and address its fields lack otherwise (not a
  role's address).
  Else the sender stands in for the lead only when it is a named person with an address of
  no system or form mailer ("wordpress", "leads", "…form…", "noreply" …) and the subject or
  body reads like an inquiry (quote, interested, call me …; not "lead", which a vendor's
  subject says). Then the sender's name and address
  are used, the first phone number written in the text, and the text itself as notes.
* When the fields give a phone but no name or e-mail (a person's signature, "Cell: …"),
  such a sender gives the name and address.
* A reply (its subject "RE:", or a "… wrote:" line) is read from the person's own text
  above what it quotes: the agent's mail below, and its signature, are not the lead's.
* A delivery failure notice (from a mailer-daemon or postmaster) is no lead, whatever form
  it quotes.
* A body read as HTML (it holds a tag) that gives no phone or e-mail is read as plain
  lines too: a text mail quoting one ``<b>`` is still text.
* A refusal for want of a phone or e-mail quotes the address or number the text does hold
  under a label this module does not read.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aggregates.lead_body import HTML_TAG, html_lines, json_lines, without_tags
from aggregates.lead_labels import LABELS, NOT_ALNUM, REMARK, field_of, is_label, is_secondary
from aggregates.mail_addresses import parsed_address
from aggregates.phones import first_phone_in, first_phone_written, to_e164


@dataclass(frozen=True, slots=True)
class ParsedLead:
    """What a lead e-mail says about the person; None where it says nothing usable."""

    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None  # E.164
    email: str | None = None  # lower-case
    state: str | None = None
    lead_source: str | None = None
    timezone: str | None = None  # IANA
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class LeadProblem:
    """Why a lead e-mail cannot become a contact (the ``reason`` of ``lead.rejected``)."""

    reason: str


# Header lines of a forwarded or replied-to message: never lead fields, never notes.
_MAIL_HEADERS: Final = frozenset(
    {"from", "to", "cc", "bcc", "date", "sent", "subject", "replyto", "returnpath", "messageid"}
)
# Form placeholders that mean "not given".
_BLANK_VALUES: Final = frozenset(
    {"n/a", "na", "none", "null", "-", "--", "unknown", "not provided"}
)

# A field line, perhaps bulleted or numbered ("1. Name: …"); dashes need spaces around them.
_FIELD_LINE: Final = re.compile(
    r"^[\s*•·-]*(?:\d{1,2}[.)]\s*)?(?P<key>[^\W\d_][^:=\t]{0,39}?)\s*"
    r"(?P<sep>:|=|\t|\s[-\u2013\u2014]\s)(?P<value>.*)$"
)
# What may surround a label written alone on its line: "--- Name ---", "**Phone**", "Email:".
_LEADING_DECORATION: Final = re.compile(r"[\s*•·#=_-]+")
# Matched at the start of the reversed text: a search for a run at the end tried every
# position of a long run in the middle of a line, in time quadratic in its length.
_TRAILING_DECORATION: Final = re.compile(r"[\s*•·#=_:?-]+")
# A header block of a forwarded message pasted without a marker line above it: a From
# line, then Sent or Date and Subject lines (Outlook's plain forward).
_HEADER_FROM: Final = re.compile(r"^\s*from:\s*\S", re.IGNORECASE)
_HEADER_SENT: Final = re.compile(r"^\s*(?:sent|to|cc):\s*\S", re.IGNORECASE)
_HEADER_SUBJECT: Final = re.compile(r"^\s*subject:", re.IGNORECASE)
_FORWARD_MARKER: Final = re.compile(
    r"^(?:-{2,}\s*(?:forwarded message|original message)\s*-*"
    r"|begin forwarded message:?|-{2,}\s*forwarded by\b.*|_{8,})$",
    re.IGNORECASE,
)
_EMAIL: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}(?![\w-]|\.[\w-])"  # a sentence's full stop may follow
)
_AUTOMATED_SENDER: Final = re.compile(
    r"^(?:no-?reply|do-?not-?reply|mailer-daemon|postmaster|bounces?|notifications?|alerts?)\b",
    re.IGNORECASE,
)
# Mailboxes of a role or a system, never a person writing in: "info@", "wordpress@",
# "leads@", "website-form-submission@".
_ROLE_MAILBOX: Final = re.compile(
    r"^(?:web|website|webmaster|wordpress|wp|crm)(?:$|[._+-])"
    r"|(?:^|[._+-])(?:leads?|forms?|webforms?|submissions?|notifications?)(?:$|[._+-])",
    re.IGNORECASE,
)
# "lead" is not among them: a vendor's "New lead: …" is no person asking.
_INQUIRY: Final = re.compile(
    r"\b(?:inquiry|enquiry|quote|interested|interest|call me|call back|callback"
    r"|contact me|reach me|more info|information)\b",
    re.IGNORECASE,
)
_FORWARD_SUBJECT: Final = re.compile(r"^\s*(?:fwd?|fw)\s*:", re.IGNORECASE)
_HONORIFICS: Final = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof"})
_US_ZONES: Final[dict[str, str]] = {
    **dict.fromkeys(("eastern", "est", "edt", "et"), "America/New_York"),
    **dict.fromkeys(("central", "cst", "cdt", "ct"), "America/Chicago"),
    **dict.fromkeys(("mountain", "mst", "mdt", "mt"), "America/Denver"),
    **dict.fromkeys(("arizona",), "America/Phoenix"),
    **dict.fromkeys(("pacific", "pst", "pdt", "pt"), "America/Los_Angeles"),
    **dict.fromkeys(("alaska", "akst", "akdt"), "America/Anchorage"),
    **dict.fromkeys(("hawaii", "hst"), "Pacific/Honolulu"),
}
_ZONE_SUFFIX: Final = re.compile(r"(?:standardtime|daylighttime|time)$")
_IANA_NAME: Final = re.compile(r"^(?:[A-Za-z_]+(?:/[A-Za-z0-9_+-]+)+|UTC)$")
# A sign-off line ("Thanks,", "Best regards"): after the lead's fields, what follows is the
# sender's signature, whose phone or address would otherwise be taken for the lead's. A
# signature goes on with a name; a sign-off followed by a field line ("Thanks!" closing a
# form's message, then "Phone: ...") is the message's own text.
_SIGN_OFF: Final = re.compile(
    r"(?:thanks|thank you|many thanks|regards|best regards|kind regards|warm regards|"
    r"best|best wishes|cheers|sincerely|yours truly|respectfully)[ \t]*[,.!]?",
    re.IGNORECASE,
)
# Whitespace before the `|` or `;` is taken from where its run starts, not from inside it
# (tried at every space of a long run that none ends, it took time quadratic in the run's
# length); the second form is a separator right after the whitespace a match took.
_PAIR_SEPARATOR: Final = re.compile(r"((?<!\s)\s*[|;]\s*|(?<=\s)[|;]\s*)")


def parse_lead_email(
    *, subject: str | None, body: str, sender: str | None
) -> ParsedLead | LeadProblem:
    """The lead written in an intake e-mail, or why there is none."""
    if not body.strip():
        return LeadProblem("empty body")
    if _DELIVERY_FAILURE.match(parsed_address(sender or "")[1]):
        # A bounce quotes the mail that failed (a lead form, say): no one is asking.
        return LeadProblem(f"a delivery failure notice from {_shown(sender or '')}")
    body = body.lstrip("\ufeff").replace("\uff1a", ":")  # a BOM; a full-width colon
    replied = bool(_REPLY_SUBJECT.match(subject or ""))
    as_json = json_lines(body)
    if as_json is None:
        plain = body.splitlines()
        html = HTML_TAG.search(body) is not None
        mail = _Body.of(html_lines(body, is_label) if html else plain, replied)
        fields = _best_fields(mail)
        if html and not _reaches(fields):
            # A plain-text mail with a tag in it ("see <b>my</b> note", "<div>Name: …" over
            # lines of its own) is read as text too, without those tags.
            stripped = _Body.of([without_tags(line) for line in plain], replied)
            stripped_fields = _best_fields(stripped)
            if _reaches(stripped_fields):
                mail, fields = stripped, stripped_fields
    else:
        mail = _Body.of(as_json, replied)
        fields = _best_fields(mail)
    # A form's From line names the person its fields are about, else a person writing in
    # is the lead: alone when the body has no field, or giving the name and address that a
    # phone alone (a signature's "Cell:") lacks. The fields' own values come first.
    person = _lead_from_from_line(mail)
    if person is None and not _names_or_mails(fields):
        person = _lead_from_sender(subject, sender, mail)
    if person is not None:
        if not (_names_or_mails(fields) or fields["phone"]):
            return person
        named = " ".join(p for p in (person.first_name, person.last_name) if p)
        fields["email"] += [person.email] if person.email else []
        fields["name"] += [named] if named else []
    return _lead_from_fields(fields, mail.lines)


@dataclass(frozen=True, slots=True)
class _Body:
    """A body's lines, where a forwarded message in them starts (`marker`), and whether the
    mail is a reply: each worked out once, for every reading of the lines."""

    lines: Sequence[str]
    marker: int | None
    reply: bool

    @classmethod
    def of(cls, lines: Sequence[str], replied: bool) -> _Body:
        """`replied`: the subject says so; else an "… wrote:" line above any forwarded
        message makes a reply (in a forward, such a line belongs to the thread forwarded)."""
        marker = _forward_at(lines)
        wrote = next((at for at, line in enumerate(lines) if _WROTE.search(line)), None)
        quoted = wrote is not None and (marker is None or wrote < marker)
        return cls(lines, marker, replied or quoted)

    @property
    def own(self) -> Sequence[str]:
        """The lines above a forwarded or quoted message: the writer's own."""
        return self.lines if self.marker is None else self.lines[: self.marker]


def _names_or_mails(fields: _Fields) -> bool:
    return any(fields[name] for name in ("first_name", "last_name", "name", "email"))


def _reaches(fields: _Fields) -> bool:
    """Whether the fields give a phone or e-mail that can be used (not "Email: Maya", which
    a reading that ran lines together may give where another reading finds the address)."""
    return any(map(to_e164, fields["phone"])) or any(map(_email, fields["email"]))


def contact_id_for_lead(lead: ParsedLead) -> str:
    """The id of the contact a lead becomes: ``lead-`` and 16 hex digits of a SHA-256.

    Derived from the e-mail (else the phone) alone, so the same person mailed twice, or to
    two sequences' intake addresses, is one contact (an opt-out then covers both). A lead
    has one or the other: `parse_lead_email` gives a LeadProblem for a mail with neither.
    """
    email = (lead.email or "").strip().casefold()
    if email:
        key = f"email:{email}"
    elif lead.phone:
        key = f"phone:{to_e164(lead.phone) or lead.phone.strip()}"
    else:
        raise ValueError("a lead with neither an e-mail nor a phone becomes no contact")
    return "lead-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


# --- from lines to fields ---------------------------------------------------------------

_Fields = dict[str, list[str]]


def _best_fields(mail: _Body) -> _Fields:
    """Fields of the first reading that finds a phone or e-mail (see the module notes). A
    reply's own text is above what it quotes, which is the agent's mail: only that is read."""
    if mail.reply:
        return _read_fields(_content(mail.own, keep_quoted=False))
    lines, marker = mail.lines, mail.marker
    below = lines if marker is None else lines[marker + 1 :]
    found: list[_Fields] = []
    # Read one way at a time: most mails are settled by the first reading. The quoted lines
    # are a reading of their own only where there are any.
    for reading in _readings(below, mail.own if marker is not None else None):
        fields = _read_fields(reading)
        if _reaches(fields):
            return fields
        found.append(fields)
    return next((f for f in found if any(f[name] for name in LABELS)), found[0])


def _readings(below: Sequence[str], forwarder: Sequence[str] | None) -> Iterator[list[str]]:
    """The lines to read, in turn: without the quoted lines, with them, and the forwarder's
    note above a forwarded message (see the module notes)."""
    yield _content(below, keep_quoted=False)
    if any(map(_quoted, below)):
        yield _content(below, keep_quoted=True)
    if forwarder is not None:
        yield _content(forwarder, keep_quoted=False)


def _quoted(line: str) -> bool:
    """A line of the mail a reply or forward quotes ("> …")."""
    return line.lstrip().startswith(">")


def _is_forward_marker(line: str) -> bool:
    return bool(_FORWARD_MARKER.match(line.lstrip("> \t").strip()))


def _forward_at(lines: Sequence[str]) -> int | None:
    """Where a forwarded message starts: a marker line, or a header block without one (a
    From line with an address, and Subject and Sent, To or Cc lines under it, as Outlook
    writes them; a form mailer's own From, Subject and Date lines are no forward, nor is a
    form's "From: Denver")."""
    for at, line in enumerate(lines):
        if _is_forward_marker(line):
            return at
        if _HEADER_FROM.match(line) and "@" in line:
            block = lines[at + 1 : at + 6]
            if any(map(_HEADER_SENT.match, block)) and any(map(_HEADER_SUBJECT.match, block)):
                return at
    return None


def _content(lines: Sequence[str], *, keep_quoted: bool) -> list[str]:
    """The lines that may hold the lead: no quotes (unless kept, then unquoted), no signature."""
    out: list[str] = []
    in_signature = False
    fields_seen = False
    for at, raw in enumerate(lines):
        line = raw
        if _quoted(line):
            if not keep_quoted:
                continue
            line = line.lstrip("> \t")
        if line.rstrip() == "--" or (
            fields_seen
            and _SIGN_OFF.fullmatch(line.strip())
            and not _field_line_next(lines, at + 1, keep_quoted=keep_quoted)
        ):
            in_signature = True
        elif _is_forward_marker(line):
            in_signature = False
            out.append("")
        elif not in_signature:
            out.append(line)
            fields_seen = fields_seen or _match(line) is not None
    return out


def _is_field(line: str) -> bool:
    return _match(line) is not None or _bare_label(line) is not None


def _field_line_next(lines: Sequence[str], start: int, *, keep_quoted: bool) -> bool:
    """Whether the first line from `start` with text on it (as `_content` reads it) is a field."""
    for j in range(start, len(lines)):  # by index: no copy of the rest per sign-off
        raw = lines[j]
        quoted = _quoted(raw)
        if quoted and not keep_quoted:
            continue
        line = raw.lstrip("> \t") if quoted else raw
        if line.strip():
            return _match(line) is not None
    return False


def _pairs(line: str) -> list[str]:
    """A line as its fields: "Phone: 1 | Email: a" is two; "Message: a; b" stays one."""
    if _match(line) is None:
        return [line]
    parts = _PAIR_SEPARATOR.split(line)
    pairs = [[parts[0]]]
    for separator, part in zip(parts[1::2], parts[2::2], strict=True):
        if _match(part) is None:
            pairs[-1] += (separator, part)  # joined once at the end: a long line stays linear
        else:
            pairs.append([part])
    return [field for pair in pairs for field in _run_together("".join(pair))]


# A colon and the (up to three) words before it: where a field written on after another
# may start. Matched on the reversed text before each colon, so a long line stays linear.
_KEY_BEFORE: Final = re.compile(r"\s*((?:[^\s:,;|]+ ){0,2}[^\s:,;|]+)(?=[\s,]|$)")


def _run_together(line: str) -> list[str]:
    """A field line as its fields when known fields follow on it after a comma or a space
    ("Name: Lu Ma, Phone: 212…", a form flattened to "Name: Lu Ma Phone: 212…"): a known
    label, and a colon after it, start a field of their own. A colon after anything else
    ("at 10:30", "http:", "Note: call me") stays in the value."""
    first = line.find(":")
    if first < 0 or line.find(":", first + 1) < 0 or field_of(line[:first]) == "notes":
        return [line]  # a message is the person's own words, fields or not
    starts: list[int] = []
    value_from = first + 1  # where the value of the field before the next one starts
    for colon in (m.start() for m in re.finditer(":", line)):
        if colon <= first:
            continue
        before = line[max(value_from, colon - 60) : colon][::-1]
        words = _KEY_BEFORE.match(before)
        if words is None:
            continue
        # The longest of the last one, two or three words that is a known label and leaves
        # the field before it a value ("Name: John Cell Phone: …" is John's "Cell Phone";
        # "Lead Type: Buyer Name: Jane" is Jane's "Name", not a "Buyer Name").
        candidates = words[1][::-1].split(" ")
        for n in range(len(candidates), 0, -1):
            key = " ".join(candidates[-n:])
            start = colon - words.start(1) - len(key)
            if key[:1].isalpha() and line[value_from:start].strip(" ,") and field_of(key):
                starts.append(start)
                value_from = colon + 1
                break
    if not starts:
        return [line]
    bounds = [0, *starts, len(line)]
    return [line[a:b].strip().rstrip(",").strip() for a, b in itertools.pairwise(bounds)]


def _match(line: str) -> tuple[str | None, str, str] | None:
    """``(field or None when unknown, key as written, value)`` for a field line, else None."""
    m = _FIELD_LINE.match(line)
    if m is None:
        return None
    key = m["key"].strip(" *")
    # "Name:: Maya", "Name => Maya": the separator doubled is no part of the value.
    value = m["value"].strip().strip("*").lstrip(":=>").strip()
    field = field_of(key)
    if field is not None:
        return field, key, value
    plausible = (
        m["sep"] == ":"
        and value
        and len(key) <= 30
        and len(key.split()) <= 4
        and not value.startswith("//")
        and NOT_ALNUM.sub("", key.casefold()) not in _MAIL_HEADERS
    )
    return (None, key, value) if plausible else None


def _bare_label(line: str) -> str | None:
    """The field a known label names when it stands alone on its line ("Phone", "--- Name
    ---", a table cell of its own): its value is on the next line."""
    text = _undecorated(line)
    if not text or len(text) > 30 or not text[0].isalpha() or not is_label(text):
        return None
    return field_of(text)


def _undecorated(line: str) -> str:
    """A line without what may surround a label: "--- Name ---", "**Phone**", "Email:"."""
    leading = _LEADING_DECORATION.match(line)
    text = line[leading.end() :] if leading else line
    trailing = _TRAILING_DECORATION.match(text[::-1])
    return text[: len(text) - trailing.end()] if trailing else text


def _read_fields(lines: Sequence[str]) -> _Fields:
    fields: _Fields = {name: [] for name in (*LABELS, "extra")}
    lines = [pair for line in lines for pair in _pairs(line)]
    # Labels alone on their lines make a form only when there are two or more of them above
    # any sign-off: one "Phone" line over a number, or a signature's "Mobile" and "Email",
    # is a person's own.
    above = itertools.takewhile(lambda line: not _SIGN_OFF.fullmatch(line.strip()), lines)
    form = len({_bare_label(line) for line in above} - {None}) > 1
    origins = _Origins(lines)
    i = 0
    while i < len(lines):
        found = _match(lines[i])
        if found is None and form and (bare := _bare_label(lines[i])) is not None:
            found = (bare, lines[i], "")
        i += 1
        if found is None:
            continue
        field, key, value = found
        origins.at(i - 1, key)
        if field is None:
            fields["extra"].append(f"{key}: {value}")
            continue
        if field == "notes":
            text, i = _continued(lines, i, value)
            if text:
                fields["notes"].append(text)
            continue
        if not value:
            value, i = _next_line_value(lines, i)
        if value and value.casefold() not in _BLANK_VALUES:
            fields[field].append(" ".join(value.split()))
            origins.took(field)
    return origins.ranked(fields)


_NAME_FIELDS: Final = ("first_name", "last_name", "name")


class _Origins:
    """Where each value of a field was read, to rank a field's values before the first
    usable one is taken:

    * A block is a run of lines between blank lines (a paragraph). A mail that gives
      someone else's phone or e-mail above the lead's (the agent it was sent to, the site's
      own "Phone: 800…") is read lead first: when the first block naming someone also
      holds a phone or e-mail, it is the lead's, and its values come first.
    * A phone or e-mail under a label of a second way to reach someone ("Office Phone",
      "Alternate Email") comes after those under a plain one ("Phone", "Mobile")."""

    def __init__(self, lines: Sequence[str]) -> None:
        self._block_of: list[int] = []
        block = 0
        for at, line in enumerate(lines):
            if not line.strip() and at and lines[at - 1].strip():
                block += 1
            self._block_of.append(block)
        self._current = (0, False)
        self._taken: dict[str, list[tuple[int, bool]]] = {}

    def at(self, line: int, key: str) -> None:
        """The field read next: the line its label stands on (its value may be on a later
        line), and the label as written."""
        self._current = (self._block_of[line], is_secondary(key))

    def took(self, field: str) -> None:
        self._taken.setdefault(field, []).append(self._current)

    def ranked(self, fields: _Fields) -> _Fields:
        def holds(block: int, names: Sequence[str]) -> bool:
            return any(b == block for name in names for b, _ in self._taken.get(name, ()))

        # The first block naming someone is the lead's when it also says how to reach
        # them; when it does not, the lead's details run on over blocks below (where an
        # agent's or a referrer's block may come too): they are read in order.
        named = sorted({b for name in _NAME_FIELDS for b, _ in self._taken.get(name, ())})
        lead = named[0] if named and holds(named[0], ("phone", "email")) else None
        for field in (*_NAME_FIELDS, "phone", "email"):
            taken = self._taken.get(field, [])
            ranked = sorted(
                zip(taken, fields[field], strict=True),
                key=lambda origin: (lead is not None and origin[0][0] != lead, origin[0][1]),
            )
            fields[field] = [value for _, value in ranked]
        return fields


def _next_line_value(lines: Sequence[str], i: int) -> tuple[str, int]:
    """The value of a key written alone on its line: the next non-blank, non-field line."""
    j = i
    while j < len(lines) and j - i < 3 and not lines[j].strip():
        j += 1
    if j < len(lines) and lines[j].strip() and not _is_field(lines[j]):
        return lines[j].strip(), j + 1
    return "", i


def _continued(lines: Sequence[str], i: int, first: str) -> tuple[str, int]:
    """A free-text field: its value and the lines that follow it up to a blank or a field."""
    parts = [first] if first else []
    if not parts:
        start = i
        while i < len(lines) and i - start < 3 and not lines[i].strip():
            i += 1
    while i < len(lines) and lines[i].strip() and not _is_field(lines[i]):
        parts.append(lines[i].strip())
        i += 1
    return "\n".join(parts), i


# --- from fields to a lead --------------------------------------------------------------


def _lead_from_fields(fields: _Fields, lines: Sequence[str]) -> ParsedLead | LeadProblem:
    _reach_apart_from_names(fields)
    phone = next((p for raw in fields["phone"] if (p := to_e164(raw))), None)
    email = next((e for raw in fields["email"] if (e := _email(raw))), None)
    if phone is None and email is None:
        return LeadProblem(_missing_reason(fields, lines))
    first = _first_name_like(fields["first_name"])
    last = _first_name_like(fields["last_name"])
    full = _first_name_like(fields["name"])
    if full and not (first and last):
        split_first, split_last = _split_name(full)
        first = first or split_first
        last = last or split_last
    notes = "\n".join([*fields["notes"], *fields["extra"]])
    return ParsedLead(
        first_name=first,
        last_name=last,
        phone=phone,
        email=email,
        state=_state(_first(fields["state"])),
        lead_source=_first(fields["lead_source"]),
        timezone=next((z for raw in fields["timezone"] if (z := _timezone(raw))), None),
        notes=notes or None,
    )


def _reach_apart_from_names(fields: _Fields) -> None:
    """A name written with the person's address or number ("Nan Hu <nan@x.com>", "John Smith
    (212) 555-0100"): the name without them, and each after the values of its own field."""
    for field in _NAME_FIELDS:
        names: list[str] = []
        for value in fields[field]:
            if _name_like(value):
                names.append(value)
                continue
            rest = value
            if (address := _EMAIL.search(rest)) is not None:
                fields["email"].append(address[0])
                rest = rest.replace(address[0], " ")
            if (phone := first_phone_written(rest)) is not None:
                fields["phone"].append(phone[0])
                rest = rest.replace(phone[1], " ")
            rest = " ".join(_BRACKETS.sub(" ", rest).split()).strip(" ,;-")
            names.append(rest if rest and rest != value and _name_like(rest) else value)
        fields[field] = names


# What an address or number leaves behind once taken out of a name: "<>", "()", "mailto:".
_BRACKETS: Final = re.compile(r"<\s*(?:mailto:)?\s*>|\(\s*\)|\[\s*\]")


def _first_name_like(values: Sequence[str]) -> str | None:
    """The first value that can be a name: no address, no phone number, no sentence (the
    message below an empty name field is no name)."""
    return next((v for v in values if _name_like(v)), None)


def _name_like(value: str) -> bool:
    words = [w.strip(",.;:!?") for w in value.casefold().split()]
    message_words = sum(w in _MESSAGE_WORDS for w in words)
    return (
        "@" not in value
        and sum(c.isdigit() for c in value) < 3
        and len(words) <= 10
        and not _SENTENCE.search(value)
        # Two of them, or one alone ("Thanks"): a message; one in a name ("Hi Tran") is not.
        and message_words < 2
        and not (message_words and len(words) == 1)
    )


# A question or an exclamation (a name may be "Smith, john paul", "Ms. maya ortiz").
_SENTENCE: Final = re.compile(r"[!?]")
# Words of a message, which a name seldom holds.
_MESSAGE_WORDS: Final = frozenset(
    {
        "i'm",
        "am",
        "is",
        "are",
        "was",
        "the",
        "please",
        "call",
        "me",
        "we",
        "you",
        "your",
        "would",
        "like",
        "want",
        "need",
        "interested",
        "thanks",
        "thank",
        "hello",
    }
)


def _missing_reason(fields: _Fields, lines: Sequence[str]) -> str:
    bad_phone = _first(fields["phone"])
    bad_email = _first(fields["email"])
    if bad_phone and bad_email:
        return (
            f"phone {_shown(bad_phone)} is not a valid number"
            f" and e-mail {_shown(bad_email)} is not a valid address"
        )
    if bad_phone:
        return f"phone {_shown(bad_phone)} is not a valid number and no e-mail"
    if bad_email:
        return f"e-mail {_shown(bad_email)} is not a valid address and no phone"
    text = "\n".join(lines)
    address = _EMAIL.search(text)
    held = address[0] if address is not None else first_phone_in(text)
    if held is not None:
        # The mail has a way to reach someone, under a label this parser does not read.
        return (
            f"no phone or e-mail field in the lead (the text holds {_shown(held)},"
            " under no label read as a phone or e-mail)"
        )
    return "no phone or e-mail in the lead"


def _shown(raw: str, limit: int = 40) -> str:
    """A value quoted for a reason, cut short: a reason is a log line, not a copy of the mail."""
    return f"'{raw if len(raw) <= limit else raw[: limit - 1] + '…'}'"


def _first(values: Sequence[str]) -> str | None:
    return values[0] if values else None


def _email(raw: str) -> str | None:
    """The address inside ``raw`` ("Jane <jane@x.com>", "mailto:…"), lower-cased, or None."""
    m = _EMAIL.search(raw)
    if m is None:
        return None
    address = m[0].casefold()
    local = address.partition("@")[0]
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    return address


def _split_name(full: str) -> tuple[str | None, str | None]:
    """First and last name of a full name: "Jane van Dijk" and "Dijk, Jane" → Jane, van Dijk."""
    if "," in full:
        last, _, first = full.partition(",")
        return first.strip() or None, last.strip() or None
    words = full.split()
    if len(words) > 1 and words[0].rstrip(".").casefold() in _HONORIFICS:
        if len(words) == 2:
            return None, words[1]  # "Mr. Smith": a family name, no given one
        words = words[1:]
    if not words:
        return None, None
    return words[0], " ".join(words[1:]) or None


def _state(raw: str | None) -> str | None:
    if raw is None:
        return None
    return raw.upper() if len(raw) == 2 and raw.isalpha() else raw


def _timezone(raw: str) -> str | None:
    """An IANA zone name for ``raw``, which may also be a US zone word like "Eastern"."""
    word = _ZONE_SUFFIX.sub("", NOT_ALNUM.sub("", REMARK.sub("", raw).casefold()))
    if word in _US_ZONES:
        return _US_ZONES[word]
    name = raw.strip()
    if not _IANA_NAME.match(name):
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def _lead_from_from_line(mail: _Body) -> ParsedLead | None:
    """The person a form mailer names in a ``From: Name <address>`` line opening its body
    (Contact Form 7's template), when the body is no forwarded message and the address no
    role's or system's."""
    if mail.marker is not None:
        return None
    lines = mail.lines
    # Its first lines: a mailer may put a heading above ("New message from your website").
    opening = [number for number, line in enumerate(lines) if line.strip()][:3]
    at = next((n for n in opening if _HEADER_FROM.match(lines[n])), None)
    if at is None:
        return None
    line = lines[at]
    display, address = _name_and_address(line.partition(":")[2].strip())
    email = _email(address) if address else None
    if email is None or not _a_persons(email):
        return None
    return _person(display, email, [*lines[:at], *lines[at + 1 :]])


def _person(display: str, email: str, lines: Sequence[str]) -> ParsedLead:
    """A person named in a From line or as the sender: their name and address, the first
    phone number their text writes, and the text as notes."""
    text = "\n".join(line.strip() for line in _content(lines, keep_quoted=False)).strip()
    first, last = _split_name(" ".join(display.split())) if display.strip() else (None, None)
    return ParsedLead(
        first_name=first,
        last_name=last,
        phone=first_phone_in(text),
        email=email,
        notes=re.sub(r"\n{3,}", "\n\n", text) or None,
    )


def _name_and_address(value: str) -> tuple[str, str]:
    """`Name <address>` apart; a form writes "Doe, Jane <jane@…>" unquoted, which an RFC
    5322 reading takes for two addresses."""
    name, bracket, rest = value.rpartition("<")
    if bracket and rest.rstrip().endswith(">"):
        return name.strip().strip('"').strip(), rest.rstrip()[:-1].strip()
    return parsed_address(value)


def _a_persons(email: str) -> bool:
    return not (_AUTOMATED_SENDER.match(email) or _ROLE_MAILBOX.search(email.partition("@")[0]))


# A reply: its subject, or the line that opens what it quotes ("On …, Bob <…> wrote:").
_WROTE: Final = re.compile(r"\bwrote:\s*$", re.IGNORECASE)
_REPLY_SUBJECT: Final = re.compile(r"^\s*(?:re|aw|sv)\s*:", re.IGNORECASE)
_DELIVERY_FAILURE: Final = re.compile(r"^(?:mailer-daemon|postmaster)@", re.IGNORECASE)


def _lead_from_sender(subject: str | None, sender: str | None, mail: _Body) -> ParsedLead | None:
    """The sender as the lead, when the mail is a person writing in (module notes); in a
    reply, from their own text above the mail it quotes."""
    display, address = parsed_address(sender or "")
    email = _email(address) if address else None
    if email is None or not any(c.isalpha() for c in display):
        return None
    if not _a_persons(email) or _FORWARD_SUBJECT.match(subject or ""):
        return None
    if mail.marker is not None and not mail.reply:
        return None
    person = _person(display, email, mail.own)
    if not _INQUIRY.search(f"{subject or ''}\n{person.notes or ''}"):
        return None
    return person
