"""who changed an appointment from the console, and why

Revision ID: 0016
Revises: 0015

An appointment event made in the console (``source: console``) names the token whose
session made it (``actor``) and, for a cancellation, the reason given (``note``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("appointment_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("actor", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("note", sa.String(length=500), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("appointment_events", schema=None) as batch_op:
        batch_op.drop_column("note")
        batch_op.drop_column("actor")
