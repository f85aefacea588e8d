"""replies by SMS and WhatsApp: inbound messages, who changed an appointment, reply settings

Revision ID: 0011
Revises: 0010

Every reply is kept in ``inbound_messages``. An appointment event says who made the change
(``source``: ``api`` or ``contact``) and the channel a contact's action came in by. A
location may set its own confirm keywords and HELP answer. Indexes find a reply's location
by the number it was sent to, its contact by phone, and the contact's next appointment.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("location_id", sa.String(length=20), nullable=True),
        sa.Column("contact_id", sa.String(length=20), nullable=True),
        sa.Column("appointment_id", sa.String(length=20), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("from_number", sa.String(length=64), nullable=False),
        sa.Column("to_number", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_inbound_messages_location_id_locations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_inbound_messages_contact_id_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointments.id"],
            name=op.f("fk_inbound_messages_appointment_id_appointments"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_location_id_received_at"),
            ["location_id", "received_at"],
        )
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_appointment_id_received_at"),
            ["appointment_id", "received_at"],
        )
    with op.batch_alter_table("appointment_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), nullable=False, server_default="api")
        )
        batch_op.add_column(
            sa.Column("channel", sa.String(length=16), nullable=False, server_default="")
        )
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "reply_confirm_keywords", sa.String(length=255), nullable=False, server_default=""
            )
        )
        batch_op.add_column(
            sa.Column("reply_help", sa.String(length=320), nullable=False, server_default="")
        )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contacts_phone_location_id"), ["phone", "location_id"])
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_appointments_contact_id_start_at"), ["contact_id", "start_at"]
        )
    with op.batch_alter_table("allowed_senders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_allowed_senders_kind_value"), ["kind", "value"])


def downgrade() -> None:
    with op.batch_alter_table("allowed_senders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allowed_senders_kind_value"))
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_appointments_contact_id_start_at"))
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_phone_location_id"))
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_column("reply_help")
        batch_op.drop_column("reply_confirm_keywords")
    with op.batch_alter_table("appointment_events", schema=None) as batch_op:
        batch_op.drop_column("channel")
        batch_op.drop_column("source")
    op.drop_table("inbound_messages")
