"""worker passes

One row per periodic worker (the reconciler) with when its last pass finished
and how many jobs it could not handle, so the ops health page can flag a
reconciler that has stalled even while no job changes state.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 18:45:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0016'
down_revision: Union[str, Sequence[str], None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'worker_passes',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('errors', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_worker_passes')),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('worker_passes')
