"""labelling item blob index

Deleting a stored blob first asks whether any dataset file or labelling item
still names it (credits/datasets/uploads.py, ``blob_named``). Dataset files
were indexed by digest; labelling items were not, so each deletion scanned
every item of every order.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 01:10:00

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0022'
down_revision: Union[str, Sequence[str], None] = '0021'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(
        op.f('ix_labelling_items_blob_sha256'), 'labelling_items', ['blob_sha256'], unique=False
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_labelling_items_blob_sha256'), table_name='labelling_items')
