"""Document and page tracking: views in progress, with time spent and read depth.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "document_views",
        sa.Column("id", BigId, nullable=False),
        sa.Column("lead_id", BigId, nullable=False),
        sa.Column("document", sa.String(length=128), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("message_key", sa.String(length=255), nullable=True),
        sa.Column("started_at", Time, nullable=False),
        sa.Column("last_beat_at", Time, nullable=False),
        sa.Column("beats", sa.Integer(), nullable=False),
        sa.Column("max_depth", sa.Float(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("closed_at", Time, nullable=True),
        sa.Column("closed_by", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("document_views", schema=None) as batch_op:
        batch_op.create_index("ix_document_views_lead", ["lead_id"], unique=False)
        batch_op.create_index(
            "ix_document_views_open",
            ["last_beat_at"],
            unique=False,
            sqlite_where=sa.text("closed_at IS NULL"),
            postgresql_where=sa.text("closed_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("document_views", schema=None) as batch_op:
        batch_op.drop_index("ix_document_views_open")
        batch_op.drop_index("ix_document_views_lead")
    op.drop_table("document_views")
