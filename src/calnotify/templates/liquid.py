"""A Liquid environment fit for untrusted templates, and save-time validation.

Templates are written by users of a location and rendered by workers, so they get no
file system (``include``/``render`` are removed), bounded loops, bounded output, bounded
nesting and bounded numbers. Validation parses the template and checks every variable it
reads against the merge fields of :mod:`calnotify.templates.merge_fields`.

Time: python-liquid bounds loops (10,000 iterations, nested loops multiplied) and output
(256 KiB); filters refuse inputs and results of more than 10,000 items or 256 KiB, and
integers of more than :data:`MAX_INT_DIGITS` digits (arithmetic on huge integers is one
long C call each). Whatever else a template does is stopped by its render budget: it
renders in a process of its own, which is ended when the budget runs out
(:mod:`calnotify.compose.pool`).

Parsing: python-liquid's lexer is a set of backtracking regular expressions that take
quadratic time on some sources (an unclosed ``{{`` repeated, a long run of blanks inside
``{{ }}`` or ``{% %}``, an unclosed ``{% raw %}`` repeated: a 64 KiB source can take
minutes), and a regular expression holds the interpreter lock for its whole run, so no
thread or budget could stop it. :func:`parse` therefore first checks the source in linear
time (:func:`lexing_hazard`) and refuses those shapes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from io import StringIO
from typing import Any, ClassVar, TextIO

from liquid import BoundTemplate, Environment, RenderContext
from liquid.exceptions import LiquidError, LiquidSyntaxError, OutputStreamLimitError
from liquid.output import LimitedStringIO

from calnotify.errors import FieldError
from calnotify.templates.merge_fields import MERGE_FIELDS, VALUE_PROPERTIES

MAX_OUTPUT_CHARS = 256 * 1024
# The most items a filter takes or gives (as many as a loop may run): a range like
# (1..30000000) costs nothing until a filter (sort, uniq, join) builds it, in one C call
# that no deadline can interrupt.
MAX_ITEMS = 10_000
# Inside one {{ }} or {% %}, python-liquid's lexers take time quadratic in a run of blanks,
# and linear in the rest of the markup for each '(' or '[' (see lexing_hazard).
MAX_BLANK_RUN = 100
MAX_BRACKETS = 64


# The most digits of an integer a filter takes or gives.
MAX_INT_DIGITS = 30
_MAX_INT = 10**MAX_INT_DIGITS


class _BoundedContext(RenderContext):
    def get_buffer(self, buf: TextIO | None = None) -> StringIO:
        # A capture or ifchanged block renders into a buffer of its own, bounded by what
        # the output may still take.
        limit = self.env.output_stream_limit
        if limit is None:
            return super().get_buffer(buf)
        carry = buf.size if isinstance(buf, LimitedStringIO) else 0
        return LimitedStringIO(limit=limit - carry)


class _BoundedTemplate(BoundTemplate):
    context_class = _BoundedContext


class SafeEnvironment(Environment):
    loop_iteration_limit: ClassVar[int | None] = 10_000
    output_stream_limit: ClassVar[int | None] = MAX_OUTPUT_CHARS
    local_namespace_limit: ClassVar[int | None] = 64 * 1024
    context_depth_limit: ClassVar[int] = 10
    block_nesting_limit: ClassVar[int] = 20
    template_class = _BoundedTemplate

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for tag in ("include", "render"):
            self.tags.pop(tag, None)
        # Liquid checks its output limit only after a whole expression is built, and a few
        # filters multiply their input ("x" | replace: "", "yyyy"): bound every result, and
        # refuse to start the multiplying ones when the result would be too large.
        for name, function in list(self.filters.items()):
            self.filters[name] = _bounded(function)
        self.filters["replace"] = _bounded(_replace, estimate=_replace_size)
        self.filters["join"] = _bounded(self.filters["join"], estimate=_join_size)


def _bounded(function: Any, estimate: Any = None) -> Any:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if any(_too_many(arg) for arg in (*args, *kwargs.values())):
            raise OutputStreamLimitError("a filter input has too many items", token=None)
        if any(_too_big(arg) for arg in (*args, *kwargs.values())):
            raise OutputStreamLimitError(_TOO_BIG, token=None)
        if estimate is not None and estimate(*args) > MAX_OUTPUT_CHARS:
            raise OutputStreamLimitError("a filter result is too large", token=None)
        result = function(*args, **kwargs)
        if isinstance(result, str) and len(result) > MAX_OUTPUT_CHARS:
            raise OutputStreamLimitError("a filter result is too large", token=None)
        if _too_many(result):
            raise OutputStreamLimitError("a filter result has too many items", token=None)
        if _too_big(result):
            raise OutputStreamLimitError(_TOO_BIG, token=None)
        return result

    # Keep what python-liquid reads off a filter (whether it wants the context, …).
    for attribute, value in vars(function).items():
        setattr(bounded, attribute, value)
    return bounded


def _too_many(value: Any) -> bool:
    if isinstance(value, range):
        # len() of a range of more items than a C integer holds raises OverflowError.
        return value.start + value.step * MAX_ITEMS < value.stop if value.step > 0 else False
    return isinstance(value, list | tuple | dict | set) and len(value) > MAX_ITEMS


_TOO_BIG = f"numbers in templates are limited to {MAX_INT_DIGITS} digits"


def _too_big(value: Any) -> bool:
    return isinstance(value, int) and not -_MAX_INT < value < _MAX_INT


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _replace(value: Any, search: Any = "", replacement: Any = "") -> str:
    return _text(value).replace(_text(search), _text(replacement))


def _replace_size(value: Any, search: Any = "", replacement: Any = "", *_: Any) -> int:
    text, old, new = _text(value), _text(search), _text(replacement)
    count = len(text) + 1 if old == "" else text.count(old)
    return len(text) + count * (len(new) - len(old))


def _join_size(value: Any, separator: Any = " ", *_: Any) -> int:
    if not isinstance(value, list | tuple):
        return len(_text(value))
    return sum(len(_text(v)) for v in value) + len(_text(separator)) * max(0, len(value) - 1)


environment = SafeEnvironment()
# HTML bodies: merge values are escaped, so a contact's name cannot inject markup.
html_environment = SafeEnvironment(autoescape=True)


@lru_cache(maxsize=1024)
def parse(source: str, *, html: bool = False) -> BoundTemplate:
    """The parsed template (cached: rules are rendered many times, and rarely change)."""
    hazard = lexing_hazard(source)
    if hazard is not None:
        raise LiquidSyntaxError(hazard, token=None)
    return (html_environment if html else environment).from_string(source)


_RAW_OPEN = re.compile(r"\{%-?\s*(raw|doc)\s*-?%\}")
_RAW_CLOSE = {
    "raw": re.compile(r"\{%-?\s*endraw\s*-?%\}"),
    "doc": re.compile(r"\{%-?\s*enddoc\s*-?%\}"),
}
# The start of a run of more than MAX_BLANK_RUN blanks (the look-behind makes the search
# try each run once, so it is linear).
_LONG_BLANK_RUN = re.compile(rf"(?<!\s)\s{{{MAX_BLANK_RUN + 1}}}")


def lexing_hazard(source: str) -> str | None:
    """Why python-liquid's lexer could take more than linear time on ``source``, or None.

    Walks the source like the lexer does, markup by markup, in linear time: every ``{{``
    needs a later ``}}``, every ``{%`` a later ``%}`` and every ``{% raw %}`` (``{% doc %}``)
    a later ``{% endraw %}`` (``{% enddoc %}``): the lexer retries each of those failures
    from the next position, scanning to the end every time. Between a delimiter and its
    end: no more than MAX_BLANK_RUN blanks in a row (the lexer backtracks over a blank run
    one character at a time, rescanning the run each time), and no more than MAX_BRACKETS
    of each of ``(`` and ``[`` (the expression lexer scans ahead from each one, for a
    ``..`` or a closing quote and ``]``). A template of any other shape is rejected by
    python-liquid itself or lexed in linear time; this also refuses a few odd ones it would
    accept (a stray ``{{`` after the last ``}}`` inside a comment).
    """
    index = 0
    output, tag = source.find("{{"), source.find("{%")
    while True:
        # Each search starts where the previous one of its kind stopped: linear in total.
        if 0 <= output < index:
            output = source.find("{{", index)
        if 0 <= tag < index:
            tag = source.find("{%", index)
        if output < 0 and tag < 0:
            return None
        if tag < 0 or 0 <= output < tag:
            start, opener, closer = output, "{{", "}}"
        else:
            start, opener, closer = tag, "{%", "%}"
            raw = _RAW_OPEN.match(source, start)
            if raw is not None:
                name = raw.group(1)
                end = _RAW_CLOSE[name].search(source, raw.end())
                if end is None:
                    return f"'{{% {name} %}}' is never closed by '{{% end{name} %}}'"
                index = end.end()
                continue
        end_index = source.find(closer, start + 2)
        if end_index < 0:
            return f"'{opener}' is never closed by '{closer}'"
        if _LONG_BLANK_RUN.search(source, start + 2, end_index) is not None:
            return (
                f"more than {MAX_BLANK_RUN} blank characters in a row between "
                f"'{opener}' and '{closer}'"
            )
        for bracket in "([":
            if source.count(bracket, start + 2, end_index) > MAX_BRACKETS:
                return f"more than {MAX_BRACKETS} '{bracket}' between '{opener}' and '{closer}'"
        index = end_index + 2


def template_errors(field: str, source: str) -> list[FieldError]:
    """Everything wrong with ``source`` as a template, each naming ``field``."""
    if not source or _plainly_valid(source):
        return []
    try:
        template = parse(source)
    except LiquidError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [FieldError(field, f"is not a valid template: {first_line}")]
    except RecursionError:
        return [FieldError(field, "is not a valid template: nested too deeply")]

    errors: list[FieldError] = []
    for segments in template.global_variable_segments():
        problem = _segment_problem(segments)
        if problem:
            errors.append(FieldError(field, problem))
    unknown_filters = sorted(set(template.filter_names()) - set(environment.filters))
    errors.extend(FieldError(field, f"unknown filter {name!r}") for name in unknown_filters)
    # One message per distinct problem, in the order found.
    return list(dict.fromkeys(errors))


# ``{{ contact.name }}``: an output of one dotted path and nothing else.
_PLAIN_OUTPUT = re.compile(r"\{\{ {0,8}([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*) {0,8}\}\}", re.ASCII)
# Words that are values in Liquid, not variables.
_LITERALS = frozenset({"true", "false", "nil", "null", "empty", "blank"})


def _plainly_valid(source: str) -> bool:
    """Whether ``source`` is text and ``{{ object.field }}`` outputs only, each a known merge
    field: what most subjects and bodies are. Such a template parses, and has nothing for
    :func:`template_errors` to report, so it is not parsed here (a template of any other
    shape is, and a problem is always reported by the parser's analysis)."""
    if "{%" in source:
        return False
    end = 0
    for output in _PLAIN_OUTPUT.finditer(source):
        text = source[end : output.start()]
        if "{{" in text or text.endswith("{"):
            return False
        segments = output.group(1).split(".")
        if segments[0] in _LITERALS or _segment_problem(segments) is not None:
            return False
        end = output.end()
    return "{{" not in source[end:]


def _segment_problem(segments: list[Any]) -> str | None:
    path = _display(segments)
    root = segments[0]
    if not isinstance(root, str) or root not in MERGE_FIELDS:
        return f"unknown merge field {{{{{path}}}}}"
    if len(segments) < 2:
        example = "name" if "name" in MERGE_FIELDS[root] else min(MERGE_FIELDS[root])
        return f"{{{{{path}}}}} is an object, not a merge field; use e.g. {{{{{root}.{example}}}}}"
    name = segments[1]
    if not isinstance(name, str) or name not in MERGE_FIELDS[root]:
        return f"unknown merge field {{{{{path}}}}}"
    rest = segments[2:]
    if len(rest) > 1 or any(not isinstance(s, str) or s not in VALUE_PROPERTIES for s in rest):
        return f"unknown merge field {{{{{path}}}}}"
    return None


def _display(segments: list[Any]) -> str:
    parts: list[str] = []
    for segment in segments:
        if isinstance(segment, list):
            parts.append(f"[{_display(segment)}]")
        else:
            parts.append(str(segment))
    return ".".join(parts)
