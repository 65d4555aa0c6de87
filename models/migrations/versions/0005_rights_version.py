"""Rights version: a counter the database moves whenever anyone's rights may have changed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 12:00:00

Replicas cache each user's computed rights and read this counter with the caller's session on
every request (``auth/access_cache.py``); the triggers live in ``models/rights.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models import rights

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'rights_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.CheckConstraint('id = 1', name=op.f('ck_rights_version_single_row')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rights_version')),
    )
    rights.install(op.get_bind())


def downgrade() -> None:
    for statement in rights.drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table('rights_version')
