"""Rendering a notification for one recipient, from the data as it is at send time.

Everything here runs on tenant-controlled text, so every step is linear in its input (no
backtracking regular expression, no parser with quadratic corners). :func:`render` is plain
CPU work: it runs in a render process (:mod:`calnotify.compose.pool`), where a render over
its budget is stopped; :func:`context` and :func:`sources` are cheap and run where the
message is drafted.
"""

from __future__ import annotations

import html
import re
import string
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

from liquid.exceptions import LiquidError

from calnotify.templates.defaults import DEFAULTS
from calnotify.templates.errors import RenderError as RenderError
from calnotify.templates.liquid import parse

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# The longest subject kept (an email header line's limit); a longer one is cut. Folding a
# subject of a few hundred KiB into header lines takes the email package about a second.
MAX_RENDERED_SUBJECT = 998


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body: str
    html: str


@dataclass(frozen=True, slots=True)
class RenderData:
    """The rows a message's merge fields come from: ORM entities or rows of their columns."""

    appointment: Any
    calendar: Any
    location: Any
    contact: Any | None
    user: Any | None  # the assigned user
    # The recipient's action links (docs/semantics.md §8), absolute URLs; "" where there are none.
    links: dict[str, str] | None = None


def full_name(row: Any) -> str:
    """A contact's or user's name: first and last, as far as given."""
    first, last = row.first_name, row.last_name
    return f"{first} {last}" if first and last else first or last


def only_date(when: datetime) -> str:
    return f"{MONTHS[when.month - 1]} {when.day}, {when.year}"


def only_time(when: datetime) -> str:
    hour = when.hour % 12 or 12
    return f"{hour}:{when.minute:02d} {'AM' if when.hour < 12 else 'PM'}"


def long_time(when: datetime) -> str:
    return f"{DAYS[when.weekday()]}, {only_date(when)} {only_time(when)}"


def context(data: RenderData, where: ZoneInfo) -> dict[str, Any]:
    """The merge fields (see :mod:`calnotify.templates.merge_fields`), shown in ``where``."""
    a, c, u, loc = data.appointment, data.contact, data.user, data.location
    links = data.links or {}
    contact_name = full_name(c) if c else ""
    start, end = a.start_at.astimezone(where), a.end_at.astimezone(where)
    full_address = ", ".join(
        p
        for p in (loc.address, loc.city, f"{loc.state} {loc.postal_code}".strip(), loc.country)
        if p
    )
    return {
        "contact": {
            "id": c.id if c else "",
            "first_name": c.first_name if c else "",
            "last_name": c.last_name if c else "",
            "name": contact_name,
            "full_name": contact_name,
            "email": c.email if c else "",
            "phone": c.phone if c else "",
            "timezone": c.timezone if c else "",
            "company_name": c.company_name if c else "",
            "address1": c.address1 if c else "",
            "city": c.city if c else "",
            "state": c.state if c else "",
            "country": c.country if c else "",
            "postal_code": c.postal_code if c else "",
        },
        "user": {
            "id": u.id if u else "",
            "first_name": u.first_name if u else "",
            "last_name": u.last_name if u else "",
            "name": full_name(u) if u else "",
            "email": u.email if u else "",
            "phone": u.phone if u else "",
        },
        "appointment": {
            "id": a.id,
            "title": a.title or data.calendar.name,
            "status": a.status,
            "start_time": long_time(start),
            "only_start_date": only_date(start),
            "only_start_time": only_time(start),
            "end_time": long_time(end),
            "only_end_date": only_date(end),
            "only_end_time": only_time(end),
            "day_of_week": DAYS[start.weekday()],
            "month": MONTHS[start.month - 1],
            "timezone": where.key,
            "time_zone": where.key,
            "meeting_location": a.address,
            "notes": a.notes or a.description,
            "cancellation_link": links.get("cancellation_link", ""),
            "reschedule_link": links.get("reschedule_link", ""),
            "confirmation_link": links.get("confirmation_link", ""),
        },
        "calendar": {"id": data.calendar.id, "name": data.calendar.name},
        "location": {
            "id": loc.id,
            "name": loc.name,
            "email": loc.email,
            "phone": loc.phone,
            "address": loc.address,
            "full_address": full_address,
            "city": loc.city,
            "state": loc.state,
            "country": loc.country,
            "postal_code": loc.postal_code,
            "website": loc.website,
            "timezone": loc.timezone,
        },
    }


def sources(
    notification_type: str,
    subject: str,
    body: str,
    template: tuple[str, str] | None,
    *,
    for_customer: bool,
) -> tuple[str, str]:
    """The subject and body templates of a message: a stored template's (subject,
    body-or-html) when the rule names one, else the rule's own subject/body, else the
    built-in default for its type and audience."""
    default = DEFAULTS[notification_type]
    subject_source, body_source = template if template is not None else (subject, body)
    if not body_source:
        body_source = default.customer if for_customer else default.team
    return subject_source or default.subject, body_source


def render(subject_source: str, body_source: str, values: dict[str, Any]) -> Rendered:
    """Subject, plain body and HTML body, rendered with the merge-field ``values``."""
    subject = _render(subject_source, values)
    # Never a line break in a subject, nor an endless one.
    subject = " ".join(subject.split())[:MAX_RENDERED_SUBJECT].rstrip()
    if _looks_like_html(body_source):
        body = _render(body_source, values, html=True)
        return Rendered(subject=subject, body=html_to_text(body), html=body)
    body = _render(body_source, values)
    return Rendered(subject=subject, body=body, html=text_to_html(body))


def _render(source: str, values: dict[str, Any], *, html: bool = False) -> str:
    try:
        return str(parse(source, html=html).render(**values))
    except (LiquidError, RecursionError, MemoryError, ValueError, OverflowError) as exc:
        raise RenderError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


_HTML_START = frozenset(string.ascii_letters + "/!")


def _looks_like_html(text: str) -> bool:
    """Whether ``text`` holds a tag: ``<`` then a letter, ``/`` or ``!``, and later a ``>``
    (what the regular expression ``<[a-zA-Z/!][^>]*>`` finds, without its quadratic
    search on a text of many ``<a`` and no ``>``)."""
    last = text.rfind(">")
    index = text.find("<")
    while index >= 0 and index + 2 <= last:
        if text[index + 1] in _HTML_START:
            return True
        index = text.find("<", index + 1)
    return False


# A paragraph break: a line break, blanks, and a line break. Linear: a match can only start
# at a line break, and a failed attempt scans only the blank run after it (a second line
# break in the run would have made it match), so attempts never scan the same text twice.
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def text_to_html(text: str) -> str:
    paragraphs = [p for p in _PARAGRAPH_BREAK.split(text.strip()) if p]
    return (
        "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
        or "<p></p>"
    )


# Elements that start a new line in the text version (before and after them).
_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "title",
        "tr",
        "ul",
    ]
)
_CELLS = frozenset({"td", "th"})  # a blank between cells of a row
# Elements whose content is not text: dropped up to their end tag, or to the end.
_RAW_TEXT_ENDS = {
    name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in ("script", "style")
}
_TAG_START = frozenset(string.ascii_letters + "/!?")
_SIMPLE_TAG = re.compile(r"</?([a-zA-Z][a-zA-Z0-9]*)\s*/?>")
_TAG_NAME = re.compile(r"</?([a-zA-Z][^\t\n\r\f />\x00]*)")
_MAX_TAG_READ = 4096  # a longer tag's attributes are not read (a URL is shorter)


class _TagReader(HTMLParser):
    """The standard library's HTML parser, given one tag at a time.

    ``html.parser`` is quadratic on some whole documents (CPython gh-135462: unclosed tags
    and comments at the end of the input are rescanned from every ``<``), so
    :func:`html_to_text` finds the tags itself, linearly, and hands this parser each tag
    alone: its work on a tag is bounded by the tag's length.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple[bool, str, list[tuple[str, str | None]]]] = []

    def read(self, tag: str) -> list[tuple[bool, str, list[tuple[str, str | None]]]]:
        """(is a start tag, name, attributes) of what ``tag`` holds."""
        simple = _SIMPLE_TAG.fullmatch(tag)
        if simple is not None:  # <p>, </p>, <br/>: the common case, read directly
            return [(tag[1] != "/", simple.group(1).lower(), [])]
        if len(tag) > _MAX_TAG_READ:  # attribute soup: only its name matters
            named = _TAG_NAME.match(tag)
            return [] if named is None else [(tag[1] != "/", named.group(1).lower(), [])]
        self.reset()
        self.events = []
        self.feed(tag)
        self.close()
        return self.events

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append((True, tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append((True, tag, attrs))  # <br/>; a <script/> still starts a script

    def handle_endtag(self, tag: str) -> None:
        self.events.append((False, tag, []))


class _Text:
    """The text version being built, and the link it is inside of."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.link: tuple[str, int] | None = None  # (URL, index of the link's first part)

    def tag(self, start: bool, name: str, attrs: list[tuple[str, str | None]]) -> None:
        if name == "br" or name in _BLOCKS:
            self.parts.append("\n")
        elif name in _CELLS:
            self.parts.append(" ")
        elif name == "a":
            self.end_link()  # links do not nest: a new one ends the last
            href = next((value for key, value in attrs if key == "href"), None) if start else None
            url = "".join((href or "").split())
            if url.lower().startswith(("http://", "https://")):
                self.link = (url, len(self.parts))

    def end_link(self) -> None:
        """After a link's text, its URL in parentheses, unless the text shows it."""
        if self.link is None:
            return
        url, first = self.link
        self.link = None
        label = " ".join("".join(self.parts[first:]).split())
        if url not in label:
            self.parts.append(f" ({url})" if label else url)


def html_to_text(markup: str) -> str:
    """The plain-text version of an HTML body.

    Tags are dropped; ``script`` and ``style`` elements with their content (an unclosed
    one to the end); comments; ``<br>`` and block elements (``p``, ``div``, ``h1``-``h6``,
    ``li``, ``tr``, ``table``, ...) start a new line; a link's URL follows its text in
    parentheses when the text does not show it; character references are decoded;
    whitespace is collapsed to single spaces, one line per line, no blank lines. A ``<``
    that starts no tag stays as text. Linear in ``markup``: each character is looked at a
    bounded number of times, whatever the nesting or the unclosed constructs.
    """
    reader = _TagReader()
    text = _Text()
    parts = text.parts
    size = len(markup)
    index = 0
    while index < size:
        less = markup.find("<", index)
        if less < 0:
            parts.append(html.unescape(markup[index:]))
            break
        if less > index:
            parts.append(html.unescape(markup[index:less]))
        if markup.startswith("<!--", less):
            end = markup.find("-->", less + 4)
            index = size if end < 0 else end + 3  # an unclosed comment runs to the end
            continue
        if markup[less + 1 : less + 2] not in _TAG_START:
            parts.append("<")
            index = less + 1
            continue
        greater = markup.find(">", less + 2)
        if greater < 0:
            # No tag can end: the rest is text, every later '<' included.
            parts.append(html.unescape(markup[less:]))
            break
        index = greater + 1
        for start, name, attrs in reader.read(markup[less:index]):
            text.tag(start, name, attrs)
            ends = _RAW_TEXT_ENDS.get(name) if start else None
            if ends is not None:
                found = ends.search(markup, index)
                after = markup.find(">", found.start() + 2) if found else -1
                index = size if after < 0 else after + 1
                break
    text.end_link()
    lines = (" ".join(line.split()) for line in "".join(parts).splitlines())
    return "\n".join(line for line in lines if line).strip()
