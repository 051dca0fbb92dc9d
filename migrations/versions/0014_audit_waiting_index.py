"""audit waiting index

A partial index on the audit rows that have no log index yet: the integrator
takes the next rows in id order among them, and without it each run scanned
the primary key past every row already in the log (a cost growing with the
log's size).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 15:45:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0014'
down_revision: Union[str, Sequence[str], None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(
        'ix_audit_events_waiting',
        'audit_events',
        ['id'],
        unique=False,
        postgresql_where=sa.text('log_index IS NULL'),
        sqlite_where=sa.text('log_index IS NULL'),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_audit_events_waiting', table_name='audit_events')
