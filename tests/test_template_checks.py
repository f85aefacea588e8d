"""A template of plain text and ``{{ object.field }}`` outputs is judged valid without being
parsed; every verdict is the parser's (templates/liquid.py)."""

from __future__ import annotations

import itertools

import pytest

from calnotify.templates import liquid
from calnotify.templates.merge_fields import MERGE_FIELDS

FIELDS = [f"{root}.{name}" for root, names in MERGE_FIELDS.items() for name in sorted(names)]
PIECES = [
    "Hi ",
    "{{contact.name}}",
    "{{ user.email }}",
    "{{   contact.first_name   }}",
    "{{contact.name.size}}",
    "{{ contact.nope }}",
    "{{contact}}",
    "{{ x }}",
    "{{ true }}",
    "{{nil}}",
    "{{{contact.name}}",
    "{{contact.name}}}",
    "{ {contact.name} }",
    "{{ contact.name | upcase }}",
    "{{- contact.name -}}",
    "{% if true %}",
    "{% endif %}",
    "{{",
    "}}",
    "{",
    "%}",
    "\n",
    "{{contact.name\n}}",
    "{{ contact['name'] }}",
    "{{contact.name.size.size}}",
    "{{ appointment.start_time }}",
    "✓ 日本",
]


def parsed(source: str) -> list[object]:
    """What the parser's analysis reports (template_errors without its shortcut)."""
    plainly = liquid._plainly_valid
    try:
        liquid._plainly_valid = lambda _source: False  # type: ignore[assignment]
        return list(liquid.template_errors("subject", source))
    finally:
        liquid._plainly_valid = plainly  # type: ignore[assignment]


@pytest.mark.parametrize("field", FIELDS)
def test_every_merge_field_alone_is_valid_both_ways(field: str) -> None:
    source = f"Dear {{{{ {field} }}}}, see you"
    assert liquid._plainly_valid(source)
    assert parsed(source) == []


def test_the_shortcut_never_disagrees_with_the_parser() -> None:
    sources = ["".join(c) for n in (1, 2, 3) for c in itertools.product(PIECES, repeat=n)]
    shortcut = 0
    for source in sources:
        expected = parsed(source)
        assert liquid.template_errors("subject", source) == expected, source
        if liquid._plainly_valid(source):
            shortcut += 1
            assert expected == [], source
    assert shortcut > 100  # the shortcut is taken, not only declined
