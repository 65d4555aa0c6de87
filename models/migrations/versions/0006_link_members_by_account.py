"""An index on link_members.account_id: an account's places without a table scan.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 13:00:00

The unique (kind, account_id) index cannot serve a lookup by account alone, which the
dashboard's link groups (one statement for a page of accounts) and unlinking make; found by
the PostGraphile comparison (bench/RESULTS.md), which scanned the table once per account.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f('ix_link_members_account_id'), 'link_members', ['account_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_link_members_account_id'), table_name='link_members')
