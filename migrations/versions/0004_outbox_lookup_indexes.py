"""outbox look-up indexes: an address's recent replies, the last hour's replies, and a
reply by the Message-ID a follow-up or bounce quotes; each scanned the whole outbox before
(a backlog of acknowledgements made ingestion quadratic)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 09:40:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_outbox_recipient_created', 'outbox', [sa.text('lower(to_address)'), 'created_at'])
    op.create_index('ix_outbox_kind_created', 'outbox', ['kind', 'created_at', 'status'])
    op.create_index('ix_outbox_message_id_lower', 'outbox', [sa.text('lower(message_id)')])


def downgrade() -> None:
    op.drop_index('ix_outbox_message_id_lower', table_name='outbox')
    op.drop_index('ix_outbox_kind_created', table_name='outbox')
    op.drop_index('ix_outbox_recipient_created', table_name='outbox')
