"""A lead e-mail's HTML or JSON body as text lines, for aggregates/intake.py: rows of label and
value cells become ``Label: value`` lines (the rules are in intake.py's notes)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Final

# A tag's name ends at a space, `/` or `>`: `<b.smith@example.com>` in plain text is an
# address, not a bold tag.
_TAG_NAMES: Final = (
    r"(?:!doctype|html|head|body|br|p|pre|div|table|thead|tbody|tr|td|th|span|font|b|strong|a"
    r"|ul|ol|li|dl|dt|dd|h[1-6])(?=[\s/>])"
)
HTML_TAG: Final = re.compile("<" + _TAG_NAMES, re.IGNORECASE)
# A whole tag of those, opening or closing: what a plain reading of a body with a few tags
# drops ("<div>Name: Maya" is "Name: Maya"), leaving "<b.smith@example.com>" as it is. No
# `<` inside one: each try then stops at the next `<`, where an unclosed "<a " ran to the
# end of the text from every one of many.
_WHOLE_TAG: Final = re.compile("</?" + _TAG_NAMES + "[^<>]*>", re.IGNORECASE)


def without_tags(line: str) -> str:
    return _SPACES.sub(" ", _WHOLE_TAG.sub(" ", line))


_SPACES: Final = re.compile(r" {2,}")


_CELL: Final = "\ue000"  # between table cells while an HTML row is being read

_BLOCK_TAGS: Final = frozenset(
    {
        "p",
        "div",
        "li",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "pre",
        "section",
        "article",
        "header",
        "footer",
        "center",
        "address",
    }
)
_HIDDEN_TAGS: Final = frozenset({"script", "style", "head", "title", "template"})


class _HtmlLines(HTMLParser):
    """Collects the text of an HTML body as lines (see the module notes)."""

    def __init__(self, is_label: Callable[[str], bool]) -> None:
        super().__init__(convert_charrefs=True)
        self._is_label = is_label
        self.lines: list[str] = []
        self._parts: list[str] = []
        # Whether `_parts` holds any text yet (a join of them per cell would be quadratic).
        self._has_text = False
        self._hidden = 0
        self._quote_depth = 0
        self._quoted = False
        # An open mailto:/tel: link: its target, and where its text starts in `_parts`.
        self._link: tuple[str, int] | None = None
        # The last row of three or more cells: labels, when the next row has as many.
        self._header: list[str] | None = None
        # The lines of a row that may be a header (two labels; label, value, label, value …),
        # said as they are unless the next row gives values for its cells.
        self._pending: list[tuple[str, bool]] = []

    def handle_starttag(
        self,
        tag: str,
        attrs: list[tuple[str, str | None]],
    ) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        elif tag in ("td", "th", "dd"):
            # A <dd> is the value of the <dt> before it: the second cell of a row.
            if self._has_text:
                self._parts.append(_CELL)
        elif tag == "blockquote":
            self._break()
            self._quote_depth += 1
        elif tag == "br" or tag in _BLOCK_TAGS:
            self._break()
        elif tag == "a":
            href = (dict(attrs).get("href") or "").strip()
            scheme, _, target = href.partition(":")
            if scheme.lower() in ("mailto", "tel") and target:
                self._link = (target.split("?", 1)[0], len(self._parts))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            # "<a href="mailto:jo@x.com">Click to email</a>": the address is the value.
            target, start = self._link
            self._link = None
            text = "".join(self._parts[start:])
            if not ("@" in text or sum(c.isdigit() for c in text) >= 7):
                self._parts[start:] = [target]
        elif tag in _HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        elif tag == "blockquote":
            self._break()
            self._quote_depth = max(0, self._quote_depth - 1)
        elif tag in _BLOCK_TAGS and tag != "dt":  # a <dt> runs on into its <dd>
            self._break()

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self._parts.append(data)
        if data.strip():
            self._has_text = True
            self._quoted = self._quoted or self._quote_depth > 0

    def close(self) -> None:
        super().close()
        self._break()
        self._flush()

    def _is_field(self, cell: str) -> bool:
        """Whether a cell is a whole field ("Phone: 720…"), no value of a header's label
        (nor a header's label written with its colon, "Phone:")."""
        key, colon, value = cell.partition(":")
        return bool(colon and value.strip()) and self._is_label(key)

    def _break(self) -> None:
        cells = [" ".join(cell.split()) for cell in "".join(self._parts).split(_CELL)]
        # A cell holding a colon alone parts a label from its value; it is no cell itself.
        cells = [cell for cell in cells if cell and cell != ":"]
        self._parts = []
        self._has_text = False
        header, quoted = self._header, self._quoted
        self._quoted = False
        if not cells:
            self._add("", quoted)
            return
        labels = [self._is_label(cell) for cell in cells]
        if (
            header is not None
            and len(cells) == len(header)
            and (len(header) > 2 or not any(labels))
            and not any(map(self._is_field, cells))
            # A row of label, value, label, value … under another such row is no header's
            # values; under a header whose columns alternate known and unknown labels
            # ("Name | Company | Email | Service") it is.
            and not (self._pending and len(cells) >= 4 and all(labels[0::2]))
        ):
            # Column layout: a header row of labels, then a row of their values.
            self._header, self._pending = None, []
            for label, value in zip(header, cells, strict=True):
                self._add(f"{label.rstrip(': ')}: {value}", quoted)
            return
        self._flush()
        if len(cells) > 1 and all(map(self._is_field, cells)):
            # Each cell a whole field ("Name: Dee" | "Phone: 212…"): a line each.
            self._header = None
            for cell in cells:
                self._add(cell, quoted)
            return
        self._header = cells if len(cells) > 2 or (len(cells) == 2 and all(labels)) else None
        pairs: list[tuple[str, str]] = []
        if len(cells) >= 4 and len(cells) % 2 == 0 and all(labels[0::2]) and not any(labels[1::2]):
            # Label, value, label, value … in one row, unless the next row gives values
            # for all of them as a header.
            pairs = list(zip(cells[0::2], cells[1::2], strict=True))
        elif len(cells) == 2:
            # A label and its value, unless both are labels and the next row holds their
            # values ("Name | Phone" over "Maya | 720…").
            pairs = [(cells[0], cells[1])]
        lines = [f"{label.rstrip(': ')}: {value}" for label, value in pairs] or [" ".join(cells)]
        if self._header is not None and pairs:
            self._pending = [(line, quoted) for line in lines]
        else:
            for line in lines:
                self._add(line, quoted)

    def _flush(self) -> None:
        for line, quoted in self._pending:
            self._add(line, quoted)
        self._pending = []

    def _add(self, line: str, quoted: bool) -> None:
        if quoted:
            line = f"> {line}"
        if line or (self.lines and self.lines[-1]):
            self.lines.append(line)


def json_lines(body: str) -> list[str] | None:
    """`key: value` lines of a body that is one JSON object, else None."""
    text = body.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    lines: list[str] = []

    def walk(node: dict[object, object]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value)
            elif isinstance(value, str | int | float) and not isinstance(value, bool):
                lines.append(f"{key}: {value}")

    walk(document)
    return lines


def html_lines(body: str, is_label: Callable[[str], bool]) -> list[str]:
    """The lines of an HTML body; `is_label` tells a label cell from a value."""
    parser = _HtmlLines(is_label)
    body = _without_endless_scans(body)
    try:
        parser.feed(body)
        parser.close()
    except AssertionError:
        # Python's parser asserts on a marked section it does not know ("<![Maya]>"): the
        # lines read so far, then the rest as text without its tags. Mail is anyone's input.
        rest = _TAG.sub(" ", body[_offset(body, parser.getpos()) :])
        return [*parser.lines, *rest.splitlines()]
    return parser.lines


_TAG: Final = re.compile(r"<[^<>]*>")  # no `<` inside, as _WHOLE_TAG
# A comment whole (left as it is), or a `<` with no `>` before the next `<` or the end.
# Matches never overlap and each look ahead stops at the next `<` or `>`: one pass.
_COMMENT_OR_UNCLOSED_LT: Final = re.compile(r"<!--.*?-->|<(?=[^<>]*(?:<|\Z))", re.DOTALL)


def _without_endless_scans(body: str) -> str:
    """The body with what Python's parser would scan to the end for again and again written
    as text: a comment opened after the last `-->` (it looked for its end from each one: "<!--x>"
    over a body took seconds) and a `<` that starts no tag (from each one: "<a <a <a …" took
    minutes). Comments that end stay comments, so the markup a form comments out is not read."""
    last_close = body.rfind("-->")
    end = last_close + 3 if last_close >= 0 else 0
    body = body[:end] + body[end:].replace("<!--", "&lt;!--")
    return _COMMENT_OR_UNCLOSED_LT.sub(_as_text_unless_comment, body)


def _as_text_unless_comment(match: re.Match[str]) -> str:
    return match[0] if match[0].startswith("<!--") else "&lt;"


def _offset(body: str, position: tuple[int, int]) -> int:
    """The index in `body` of a parser position (line from 1, column from 0)."""
    line, column = position
    starts = [0, *(m.end() for m in re.finditer("\n", body))]  # as the parser counts lines
    return starts[min(line, len(starts)) - 1] + column
