"""planning jobs; recurring series (occurrence rows, horizon); rule planned_version

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "planning_jobs",
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.Column("location_id", sa.String(length=20), nullable=False),
        sa.Column("calendar_id", sa.String(length=20), nullable=False),
        sa.Column("notification_id", sa.String(length=20), nullable=False),
        sa.Column("notification_version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("fresh", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cursor", sa.String(length=64), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planning_jobs")),
    )
    op.create_index(
        op.f("ix_planning_jobs_status_created_at"),
        "planning_jobs",
        ["status", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_planning_jobs_notification_id_status"),
        "planning_jobs",
        ["notification_id", "status"],
        unique=False,
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("planned_version", sa.Integer(), nullable=False, server_default="1")
        )
    op.execute("UPDATE notifications SET planned_version = version")
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("master_id", sa.String(length=20), nullable=True))
        batch_op.add_column(
            sa.Column("original_start_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("is_exception", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("materialized_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("planned_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("instance_id", sa.String(length=48), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("master_event_id", sa.String(length=20), nullable=False, server_default="")
        )
    # Messages of an occurrence carry its instance id (<masterEventId>_<epoch ms>).
    for table in ("outbox_messages", "inbox_items"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "appointment_id",
                existing_type=sa.String(length=20),
                type_=sa.String(length=48),
                existing_nullable=False,
            )
    op.create_index(
        op.f("ix_deliveries_master_event_id_due_at"),
        "deliveries",
        ["master_event_id", "due_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_appointments_master_id_original_start_at"),
        "appointments",
        ["master_id", "original_start_at"],
        unique=False,
    )


def downgrade() -> None:
    for table in ("outbox_messages", "inbox_items"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "appointment_id",
                existing_type=sa.String(length=48),
                type_=sa.String(length=20),
                existing_nullable=False,
            )
    op.drop_index(op.f("ix_deliveries_master_event_id_due_at"), table_name="deliveries")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("master_event_id")
        batch_op.drop_column("instance_id")
    op.drop_index(op.f("ix_appointments_master_id_original_start_at"), table_name="appointments")
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_column("planned_until")
        batch_op.drop_column("materialized_until")
        batch_op.drop_column("is_exception")
        batch_op.drop_column("original_start_at")
        batch_op.drop_column("master_id")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("planned_version")
    op.drop_index(op.f("ix_planning_jobs_notification_id_status"), table_name="planning_jobs")
    op.drop_index(op.f("ix_planning_jobs_status_created_at"), table_name="planning_jobs")
    op.drop_table("planning_jobs")
