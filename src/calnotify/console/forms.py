"""The rule and template forms: what a browser sends ↔ the API's bodies and errors.

A form goes through the very validation the API applies; each problem the API would
answer with (``[0].receiverType: …``) is shown beside the form field it is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from calnotify.api.errors import field_path
from calnotify.console.web import first
from calnotify.errors import FieldError
from calnotify.notifications.schemas import NotificationCreate, NotificationUpdate

SCHEDULE_ROWS = 3
MAX_SCHEDULE_ROWS = 10
Body = TypeVar("Body", NotificationCreate, NotificationUpdate)

# API field → the form field its problems are shown beside.
_FIELD_OF = {
    "receiverType": "receiverType",
    "channel": "channel",
    "notificationType": "notificationType",
    "isActive": "isActive",
    "templateId": "templateId",
    "body": "body",
    "subject": "subject",
    "beforeTime": "schedule",
    "afterTime": "schedule",
    "additionalEmailIds": "additionalEmails",
    "additionalPhoneNumbers": "additionalPhones",
    "selectedUsers": "selectedUsers",
    "fromAddress": "fromAddress",
    "fromName": "fromName",
    "fromNumber": "fromNumber",
    # templates
    "name": "name",
    "type": "type",
    "html": "html",
}


@dataclass
class RuleForm:
    """What the rule form shows: the values typed (as text) and the problems found."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.errors or self.general)

    def add(self, problems: list[FieldError]) -> None:
        for problem in problems:
            name = problem.field
            if name.startswith("[0]."):
                name = name[4:]
            base = name.split("[", 1)[0].split(".", 1)[0]
            if base == "template" and "." in name:  # a template's template.html, …
                name = base = name.split(".", 1)[1]
            target = _FIELD_OF.get(base)
            if target is None:
                self.general.append(str(problem))
            else:
                detail = name[len(base) :].lstrip(".")
                text = f"{detail}: {problem.message}" if detail else problem.message
                self.errors.setdefault(target, []).append(text)


def empty_rule() -> RuleForm:
    return RuleForm(
        values={
            "channel": "email",
            "receiverType": "contact",
            "notificationType": "booked",
            "isActive": True,
            "subject": "",
            "body": "",
            "templateId": "",
            "schedule": [{"when": "before", "offset": "", "unit": "hours"}] * SCHEDULE_ROWS,
            "additionalEmails": "",
            "additionalPhones": "",
            "selectedUsers": [],
            "fromAddress": "",
            "fromName": "",
            "fromNumber": "",
        }
    )


def rule_from_row(row: Any) -> RuleForm:
    entries = [{"when": "before", **e} for e in row.before_time] + [
        {"when": "after", **e} for e in row.after_time
    ]
    schedule = [
        {"when": e["when"], "offset": _number(e.get("timeOffset")), "unit": e.get("unit") or ""}
        for e in entries
    ]
    schedule += [{"when": "before", "offset": "", "unit": "hours"}] * max(
        0, SCHEDULE_ROWS - len(schedule)
    )
    return RuleForm(
        values={
            "channel": row.channel,
            "receiverType": row.receiver_type,
            "notificationType": row.notification_type,
            "isActive": row.is_active,
            "subject": row.subject,
            "body": row.body,
            "templateId": row.template_id,
            "schedule": schedule,
            "additionalEmails": "\n".join(row.additional_email_ids),
            "additionalPhones": "\n".join(row.additional_phone_numbers),
            "selectedUsers": list(row.selected_users),
            "fromAddress": row.from_address,
            "fromName": row.from_name,
            "fromNumber": row.from_number,
        }
    )


def rule_from_fields(fields: Mapping[str, list[str]]) -> RuleForm:
    """The form as typed, kept to show it again (more than ten schedule rows are refused
    with a message, never dropped)."""
    rows = []
    count = _schedule_rows(fields)
    for i in range(count):
        rows.append(
            {
                "when": first(fields, f"when{i}") or "before",
                "offset": first(fields, f"offset{i}").strip(),
                "unit": first(fields, f"unit{i}") or "hours",
            }
        )
    form = RuleForm(
        values={
            "channel": first(fields, "channel"),
            "receiverType": first(fields, "receiverType"),
            "notificationType": first(fields, "notificationType"),
            "isActive": bool(first(fields, "isActive")),
            "subject": first(fields, "subject"),
            "body": first(fields, "body"),
            "templateId": first(fields, "templateId"),
            "schedule": rows,
            "additionalEmails": first(fields, "additionalEmails"),
            "additionalPhones": first(fields, "additionalPhones"),
            "selectedUsers": list(fields.get("selectedUsers", [])),
            "fromAddress": first(fields, "fromAddress"),
            "fromName": first(fields, "fromName"),
            "fromNumber": first(fields, "fromNumber"),
        }
    )
    if count > MAX_SCHEDULE_ROWS:
        form.errors["schedule"] = [
            f"at most {MAX_SCHEDULE_ROWS} offsets: {count} were sent, remove "
            f"{count - MAX_SCHEDULE_ROWS}"
        ]
    return form


def rule_body(form: RuleForm) -> dict[str, Any]:
    """The API body the form stands for (camelCase, as a client would send it)."""
    v = form.values
    before: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    for i, entry in enumerate(v["schedule"]):
        if not entry["offset"]:
            continue
        try:
            number = float(entry["offset"])
        except ValueError:
            form.errors.setdefault("schedule", []).append(
                f"row {i + 1}: the offset must be a number"
            )
            continue
        offset: float | int = int(number) if number.is_integer() else number
        (after if entry["when"] == "after" else before).append(
            {"timeOffset": offset, "unit": entry["unit"]}
        )
    body: dict[str, Any] = {
        "channel": v["channel"] or None,
        "receiverType": v["receiverType"] or None,
        "notificationType": v["notificationType"] or None,
        "isActive": v["isActive"],
        "subject": v["subject"],
        "body": v["body"],
        "templateId": v["templateId"],
        "beforeTime": before,
        "afterTime": after,
        "additionalEmailIds": _lines(v["additionalEmails"]),
        "additionalPhoneNumbers": _lines(v["additionalPhones"]),
        "selectedUsers": v["selectedUsers"],
        "fromAddress": v["fromAddress"],
        "fromName": v["fromName"],
        "fromNumber": v["fromNumber"],
    }
    return body


def parse_rule(form: RuleForm, model: type[Body]) -> Body | None:
    """The form as a create or update body; None (with its problems added) if invalid."""
    try:
        return model.model_validate(rule_body(form))
    except ValidationError as exc:
        form.add(validation_problems(exc))
        return None


def validation_problems(exc: ValidationError) -> list[FieldError]:
    problems = []
    for error in exc.errors():
        name = field_path(tuple(error.get("loc", ())))
        message = "is required" if error.get("type") == "missing" else str(error.get("msg"))
        problems.append(FieldError(name, message.removeprefix("Value error, ")))
    return problems


def _schedule_rows(fields: Mapping[str, list[str]]) -> int:
    """How many schedule rows the form sent (its fields are bounded: MAX_FORM_FIELDS)."""
    count = 0
    while f"offset{count}" in fields:
        count += 1
    return max(count, 1)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)
