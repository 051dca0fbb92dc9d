"""usage records: pending records indexed in settlement's order

Settlement takes pending records job by job (records from outside meters,
which have no job, first), so that a batch books one capture per job rather
than one per record when jobs have several records waiting. This index reads
pending records in that order.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 03:40:00

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0023'
down_revision: Union[str, Sequence[str], None] = '0022'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(
        op.f('ix_usage_records_status_job_id_id'),
        'usage_records',
        ['status', 'job_id', 'id'],
        unique=False,
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_usage_records_status_job_id_id'), table_name='usage_records')
