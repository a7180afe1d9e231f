"""Email delivery: message state, the captured mail of the built-in SMTP sink, inbound bounces and complaints.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("recipient", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("subject", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("links", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("next_attempt_at", Time, nullable=True))
        batch_op.add_column(sa.Column("leased_until", Time, nullable=True))
        batch_op.add_column(sa.Column("data_started_at", Time, nullable=True))
        batch_op.add_column(sa.Column("sent_at", Time, nullable=True))
        batch_op.add_column(sa.Column("relay", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("test", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("uncertain", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_unique_constraint("uq_outbox_message_id", ["message_id"])
        batch_op.create_index("ix_outbox_due", ["state", "next_attempt_at"], unique=False)

    op.create_table(
        "captured_messages",
        sa.Column("id", BigId, nullable=False),
        sa.Column("outbox_id", BigId, nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("mail_from", sa.String(length=320), nullable=False),
        sa.Column("rcpt_tos", sa.JSON(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("captured_at", Time, nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("captured_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_captured_messages_message_id"), ["message_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_captured_messages_outbox_id"), ["outbox_id"], unique=False
        )

    op.create_table(
        "consents",
        sa.Column("id", BigId, nullable=False),
        sa.Column("lead_id", BigId, nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("who", sa.String(length=320), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("wording", sa.Text(), nullable=False),
        sa.Column("at", Time, nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("recorded_at", Time, nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index("ix_consents_lead", ["lead_id", "scope", "at"], unique=False)

    op.create_table(
        "preferences",
        sa.Column("lead_id", BigId, nullable=False),
        sa.Column("topics_off", sa.JSON(), nullable=False),
        sa.Column("frequency", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", Time, nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("lead_id"),
    )

    op.create_table(
        "inbound_messages",
        sa.Column("id", BigId, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("mail_from", sa.String(length=320), nullable=False),
        sa.Column("rcpt_to", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("outbox_id", BigId, nullable=True),
        sa.Column("lead_id", BigId, nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", Time, nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbound_messages_lead_id"), ["lead_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_outbox_id"), ["outbox_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_messages_outbox_id"))
        batch_op.drop_index(batch_op.f("ix_inbound_messages_lead_id"))
    op.drop_table("inbound_messages")
    op.drop_table("preferences")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index("ix_consents_lead")
    op.drop_table("consents")
    with op.batch_alter_table("captured_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_captured_messages_outbox_id"))
        batch_op.drop_index(batch_op.f("ix_captured_messages_message_id"))
    op.drop_table("captured_messages")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_due")
        batch_op.drop_constraint("uq_outbox_message_id", type_="unique")
        for column in (
            "uncertain",
            "test",
            "last_error",
            "relay",
            "sent_at",
            "data_started_at",
            "leased_until",
            "next_attempt_at",
            "links",
            "subject",
            "recipient",
            "message_id",
        ):
            batch_op.drop_column(column)
