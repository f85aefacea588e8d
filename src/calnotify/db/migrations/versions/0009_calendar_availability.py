"""calendar availability: open hours, slot interval, buffers, limits, booking window

Revision ID: 0009
Revises: 0008

HighLevel's availability fields of a calendar become columns. Until now they were echoed
from ``calendars.extra`` (all but ``openHours``, which was dropped); the values found there
that the API would accept move into the new columns, and leave ``extra``. Values the API
would refuse stay in ``extra``, where the answers no longer show them.
"""

import math
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
PAGE = 500

# Minutes in each unit of the slot fields, and the most each count field may be, in its
# unit: the API's own limits (calendars/availability.py) as they were written here.
SLOT_MINUTES = {"mins": 1, "minutes": 1, "hours": 60}
WEEK_MINUTES = 7 * 24 * 60
AFTER_MAX = {"hours": 8784, "days": 366, "weeks": 52, "months": 12}
FOR_MAX = {"days": 731, "weeks": 104, "months": 24}

# wire field → column, each (value, unit) pair together.
PAIRS = (
    ("slotInterval", "slot_interval", "slotIntervalUnit", "slot_interval_unit"),
    ("slotBuffer", "slot_buffer", "slotBufferUnit", "slot_buffer_unit"),
    ("preBuffer", "pre_buffer", "preBufferUnit", "pre_buffer_unit"),
    (
        "allowBookingAfter",
        "allow_booking_after",
        "allowBookingAfterUnit",
        "allow_booking_after_unit",
    ),
    ("allowBookingFor", "allow_booking_for", "allowBookingForUnit", "allow_booking_for_unit"),
)
SINGLES = (
    ("appoinmentPerSlot", "appointments_per_slot"),
    ("appoinmentPerDay", "appointments_per_day"),
    ("allowReschedule", "allow_reschedule"),
    ("allowCancellation", "allow_cancellation"),
)
DEFAULTS: dict[str, Any] = {
    "slot_interval": None,
    "slot_interval_unit": "mins",
    "slot_buffer": 0,
    "slot_buffer_unit": "mins",
    "pre_buffer": 0,
    "pre_buffer_unit": "mins",
    "appointments_per_slot": 1,
    "appointments_per_day": 0,
    "allow_booking_after": 0,
    "allow_booking_after_unit": "hours",
    "allow_booking_for": 0,
    "allow_booking_for_unit": "days",
    "allow_reschedule": True,
    "allow_cancellation": True,
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _pair_ok(column: str, amount: float, unit: Any) -> bool:
    if column in ("slot_interval", "slot_buffer", "pre_buffer"):
        if unit not in SLOT_MINUTES:
            return False
        minutes = amount * SLOT_MINUTES[unit]
        low = 1 if column == "slot_interval" else 0
        return low <= minutes <= WEEK_MINUTES
    limits = AFTER_MAX if column == "allow_booking_after" else FOR_MAX
    if unit not in limits or not 0 <= amount <= limits[unit]:
        return False
    return unit != "months" or amount.is_integer()


def _single_ok(column: str, value: Any) -> bool:
    if column in ("allow_reschedule", "allow_cancellation"):
        return isinstance(value, bool)
    amount = _number(value)
    if amount is None or not amount.is_integer():
        return False
    return 1 <= amount <= 1000 if column == "appointments_per_slot" else 0 <= amount <= 10000


def _moved(extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The column values taken from ``extra``, and ``extra`` without them."""
    values: dict[str, Any] = {}
    rest = dict(extra)
    for field, column, unit_field, unit_column in PAIRS:
        amount = _number(extra.get(field))
        unit = extra.get(unit_field, DEFAULTS[unit_column])
        if amount is not None and _pair_ok(column, amount, unit):
            values[column], values[unit_column] = amount, unit
            rest.pop(field, None)
            rest.pop(unit_field, None)
    for field, column in SINGLES:
        if field in extra and _single_ok(column, extra[field]):
            value = extra[field]
            values[column] = value if isinstance(value, bool) else int(value)
            rest.pop(field)
    return values, rest


def upgrade() -> None:
    with op.batch_alter_table("calendars", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_hours", JSON, nullable=True))
        batch_op.add_column(sa.Column("slot_interval", sa.Float(), nullable=True))
        for name, default in (
            ("slot_interval_unit", "mins"),
            ("slot_buffer_unit", "mins"),
            ("pre_buffer_unit", "mins"),
            ("allow_booking_after_unit", "hours"),
            ("allow_booking_for_unit", "days"),
        ):
            batch_op.add_column(
                sa.Column(name, sa.String(length=8), nullable=False, server_default=default)
            )
        for name in ("slot_buffer", "pre_buffer", "allow_booking_after", "allow_booking_for"):
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("appointments_per_slot", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(
            sa.Column("appointments_per_day", sa.Integer(), nullable=False, server_default="0")
        )
        for name in ("allow_reschedule", "allow_cancellation"):
            batch_op.add_column(
                sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.true())
            )
    _move_from_extra()


def _calendars() -> sa.TableClause:
    booleans = ("allow_reschedule", "allow_cancellation")
    return sa.table(
        "calendars",
        sa.column("id", sa.String()),
        sa.column("extra", JSON),
        *(sa.column(name, sa.Boolean() if name in booleans else None) for name in DEFAULTS),
    )


def _pages(connection: sa.Connection, table: sa.TableClause) -> Iterator[Sequence[sa.Row[Any]]]:
    """The calendars' rows, a page at a time (in id order)."""
    after = ""
    while True:
        rows = connection.execute(
            sa.select(*table.c).where(table.c.id > after).order_by(table.c.id).limit(PAGE)
        ).all()
        if not rows:
            return
        yield rows
        after = rows[-1].id


def _move_from_extra() -> None:
    connection = op.get_bind()
    table = _calendars()
    for rows in _pages(connection, table):
        for row in rows:
            values, rest = _moved(row.extra or {})
            if values:
                connection.execute(
                    sa.update(table).where(table.c.id == row.id).values(extra=rest, **values)
                )


def downgrade() -> None:
    # Values set away from their defaults go back to ``extra``, where they were echoed from.
    connection = op.get_bind()
    table = _calendars()
    for rows in _pages(connection, table):
        for row in rows:
            extra = dict(row.extra or {})
            for field, column, unit_field, unit_column in PAIRS:
                value = getattr(row, column)
                if value is not None and value != DEFAULTS[column]:
                    extra[field], extra[unit_field] = value, getattr(row, unit_column)
            for field, column in SINGLES:
                if getattr(row, column) != DEFAULTS[column]:
                    extra[field] = getattr(row, column)
            if extra != (row.extra or {}):
                connection.execute(sa.update(table).where(table.c.id == row.id).values(extra=extra))
    with op.batch_alter_table("calendars", schema=None) as batch_op:
        for name in reversed(("open_hours", *DEFAULTS)):
            batch_op.drop_column(name)
