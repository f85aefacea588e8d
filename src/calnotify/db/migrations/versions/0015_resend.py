"""resending a failed or skipped delivery

Revision ID: 0015
Revises: 0014

A delivery resent by hand (``POST /deliveries/{id}/resend``, the console's timeline) is a
new row linked to the one it resends (``resend_of``), recording who asked (``requested_by``)
and when (``requested_at``); the index finds a delivery's resends.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("resend_of", sa.String(length=20), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("requested_by", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_deliveries_resend_of"), ["resend_of"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_resend_of"))
        batch_op.drop_column("requested_at")
        batch_op.drop_column("requested_by")
        batch_op.drop_column("resend_of")
