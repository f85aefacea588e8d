"""outbound webhooks: endpoints per location; a webhook delivery has no rule

Revision ID: 0014
Revises: 0013

``webhook_endpoints`` holds each location's webhook URLs, their event types and signing
secrets (docs/semantics.md §8, "Outbound webhooks"). A webhook is a delivery of channel
``webhook``: it has no notification rule (``notification_id`` NULL), and a reply's webhook
may have no appointment (``appointment_id`` NULL). SQLite rebuilds ``deliveries`` for
this; its partial indexes are made again afterwards with their conditions.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DUE = sa.text("status = 'scheduled'")
_LEASED = sa.text("status = 'sending'")


def _partial_indexes(create: bool) -> None:
    """The due-time and lease indexes, which a SQLite rebuild would make without their
    conditions."""
    for name, column, where in (
        ("ix_deliveries_due", "run_at", _DUE),
        ("ix_deliveries_leased", "lease_until", _LEASED),
    ):
        if create:
            op.create_index(
                name,
                "deliveries",
                [column],
                unique=False,
                postgresql_where=where,
                sqlite_where=where,
            )
        else:
            op.drop_index(name, table_name="deliveries")


def _nullable(nullable: bool) -> None:
    _partial_indexes(create=False)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for column in ("appointment_id", "notification_id"):
            batch_op.alter_column(column, existing_type=sa.String(length=20), nullable=nullable)
    _partial_indexes(create=True)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("location_id", sa.String(length=20), nullable=False),
        sa.Column("url", sa.String(length=320), nullable=False),
        sa.Column("events", sa.String(length=255), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_webhook_endpoints_location_id_locations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        op.f("ix_webhook_endpoints_location_id_created_at"),
        "webhook_endpoints",
        ["location_id", "created_at"],
        unique=False,
    )
    _nullable(True)


def downgrade() -> None:
    op.execute("DELETE FROM deliveries WHERE channel = 'webhook'")
    _nullable(False)
    op.drop_index(
        op.f("ix_webhook_endpoints_location_id_created_at"), table_name="webhook_endpoints"
    )
    op.drop_table("webhook_endpoints")
