"""operator tokens: a token of no location, and the location an operator's console is in

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column("location_id", existing_type=sa.String(length=20), nullable=True)
        batch_op.add_column(
            sa.Column("operator", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("location_id", sa.String(length=20), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_console_sessions_location_id_locations"),
            "locations",
            ["location_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_console_sessions_location_id_locations"), type_="foreignkey"
        )
        batch_op.drop_column("location_id")
    op.execute("DELETE FROM api_tokens WHERE location_id IS NULL")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("operator")
        batch_op.alter_column("location_id", existing_type=sa.String(length=20), nullable=False)
