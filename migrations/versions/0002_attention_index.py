"""index for the applications that need attention

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 03:40:00
"""
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_applications_attention', 'applications', ['needs_attention', 'group_code'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_applications_attention', table_name='applications')
