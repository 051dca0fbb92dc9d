"""dataset dois

One row per dataset version that has a DOI (only when DOIs through DataCite
are configured): the DOI, its state at DataCite as last confirmed, whether
DataCite still has to be told something, and the retry bookkeeping of the
sweep (``credits datasets sync-dois``). A table of its own, so that
``dataset_versions`` (and the search triggers of 0010 on it) stay as they are.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 09:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('dataset_dois',
    sa.Column('version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('doi', sa.String(length=255), nullable=False),
    sa.Column('datacite_state', sa.String(length=16), nullable=True),
    sa.Column('pending', sa.Boolean(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("datacite_state IS NULL OR datacite_state IN ('draft', 'findable', 'registered')", name=op.f('ck_dataset_dois_datacite_state')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_dataset_dois_attempts_not_negative')),
    sa.ForeignKeyConstraint(['version_id'], ['dataset_versions.id'], name=op.f('fk_dataset_dois_version_id_dataset_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('version_id', name=op.f('pk_dataset_dois')),
    sa.UniqueConstraint('doi', name=op.f('uq_dataset_dois_doi'))
    )
    with op.batch_alter_table('dataset_dois', schema=None) as batch_op:
        batch_op.create_index('ix_dataset_dois_pending', ['pending', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    """Downgrade schema; refused once a DOI was made findable or registered (it cannot
    be deleted at DataCite, so its record here must not be lost)."""
    registered = op.get_bind().execute(
        sa.text("SELECT count(*) FROM dataset_dois WHERE datacite_state IN ('findable', 'registered')")
    ).scalar_one()
    if registered:
        raise RuntimeError(f"cannot downgrade below 0011: {registered} DOI(s) are registered at DataCite")
    with op.batch_alter_table('dataset_dois', schema=None) as batch_op:
        batch_op.drop_index('ix_dataset_dois_pending')

    op.drop_table('dataset_dois')
