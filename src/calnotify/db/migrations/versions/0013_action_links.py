"""signing secrets of the recipients' action links

Revision ID: 0013
Revises: 0012

``link_secrets`` holds the server secrets that sign the links of
``{{appointment.confirmation_link}}`` and the like (docs/semantics.md §8). The first one is
made when the service first needs it; ``calnotify secrets rotate`` adds a new one and
retires the previous, which still verifies its links for a grace period.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "link_secrets",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_secrets")),
    )


def downgrade() -> None:
    op.drop_table("link_secrets")
