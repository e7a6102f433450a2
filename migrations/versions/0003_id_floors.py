"""id_floors: the largest application id ever given out, so an erased application's id
(and its reference, which its applicant may still quote) is never given to someone else

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 08:10:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('id_floors',
                    sa.Column('name', sa.String(length=64), nullable=False),
                    sa.Column('value', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('name'))


def downgrade() -> None:
    op.drop_table('id_floors')
