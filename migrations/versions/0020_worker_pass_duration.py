"""worker pass duration

How long each periodic worker's last pass took, for the reconcile duration
Prometheus reads at scrape time. Null for a pass recorded before this revision.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 20:45:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0020'
down_revision: Union[str, Sequence[str], None] = '0019'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('worker_passes') as batch:
        batch.add_column(sa.Column('duration_seconds', sa.Float(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('worker_passes') as batch:
        batch.drop_column('duration_seconds')
