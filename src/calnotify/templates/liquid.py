"""A Liquid environment fit for untrusted templates, and save-time validation.

Templates are written by users of a location and rendered by workers, so they get no
file system (``include``/``render`` are removed), bounded loops, bounded output and
bounded nesting. Validation parses the template and checks every variable it reads
against the merge fields of :mod:`calnotify.templates.merge_fields`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

from liquid import BoundTemplate, Environment
from liquid.exceptions import LiquidError, OutputStreamLimitError

from calnotify.errors import FieldError
from calnotify.templates.merge_fields import MERGE_FIELDS, VALUE_PROPERTIES

MAX_OUTPUT_CHARS = 256 * 1024


class SafeEnvironment(Environment):
    loop_iteration_limit: ClassVar[int | None] = 10_000
    output_stream_limit: ClassVar[int | None] = MAX_OUTPUT_CHARS
    local_namespace_limit: ClassVar[int | None] = 64 * 1024
    context_depth_limit: ClassVar[int] = 10
    block_nesting_limit: ClassVar[int] = 20

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
        if estimate is not None and estimate(*args) > MAX_OUTPUT_CHARS:
            raise OutputStreamLimitError("a filter result is too large", token=None)
        result = function(*args, **kwargs)
        if isinstance(result, str) and len(result) > MAX_OUTPUT_CHARS:
            raise OutputStreamLimitError("a filter result is too large", token=None)
        return result

    # Keep what python-liquid reads off a filter (whether it wants the context, …).
    for attribute, value in vars(function).items():
        setattr(bounded, attribute, value)
    return bounded


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
    return (html_environment if html else environment).from_string(source)


def template_errors(field: str, source: str) -> list[FieldError]:
    """Everything wrong with ``source`` as a template, each naming ``field``."""
    if not source:
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
