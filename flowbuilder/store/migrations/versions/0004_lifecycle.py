"""Lead lifecycle: when each lead's rules are due, segment members, population measures, and
decision-log rows made by the workspace's rules rather than a flow.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rules_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_leads_rules_due",
            ["rules_due_at"],
            unique=False,
            sqlite_where=sa.text("rules_due_at IS NOT NULL"),
            postgresql_where=sa.text("rules_due_at IS NOT NULL"),
        )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.alter_column("flow", existing_type=sa.String(length=128), nullable=True)
    with op.batch_alter_table("clocks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("value", sa.Text(), nullable=True))
    op.create_table(
        "segment_members",
        sa.Column("segment", sa.String(length=128), nullable=False),
        sa.Column("lead_id", BigId, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("segment", "lead_id"),
    )
    with op.batch_alter_table("segment_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_segment_members_lead_id"), ["lead_id"], unique=False)
    op.create_table(
        "populations",
        sa.Column("measure", sa.String(length=512), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("measure"),
    )


def downgrade() -> None:
    op.drop_table("populations")
    with op.batch_alter_table("segment_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_segment_members_lead_id"))
    op.drop_table("segment_members")
    with op.batch_alter_table("clocks", schema=None) as batch_op:
        batch_op.drop_column("value")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.alter_column("flow", existing_type=sa.String(length=128), nullable=False)
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_rules_due")
        batch_op.drop_column("rules_due_at")
