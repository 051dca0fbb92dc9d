"""proposal attachments

A proposal's PDFs (a project description, CVs): one row each, naming the
blob that holds the bytes by its sha256 in the store's attachment area.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 18:10:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0019'
down_revision: Union[str, Sequence[str], None] = '0018'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('proposal_attachments',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('proposal_id', BIG_ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('uploaded_by_user_id', BIG_ID, nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('description', 'cv')", name=op.f('ck_proposal_attachments_kind')),
    sa.CheckConstraint('size > 0', name=op.f('ck_proposal_attachments_size_positive')),
    sa.ForeignKeyConstraint(['proposal_id'], ['proposals.id'], name=op.f('fk_proposal_attachments_proposal_id_proposals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['uploaded_by_user_id'], ['users.id'], name=op.f('fk_proposal_attachments_uploaded_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proposal_attachments'))
    )
    op.create_index(op.f('ix_proposal_attachments_proposal_id'), 'proposal_attachments', ['proposal_id'], unique=False)
    op.create_index(op.f('ix_proposal_attachments_sha256'), 'proposal_attachments', ['sha256'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_proposal_attachments_sha256'), table_name='proposal_attachments')
    op.drop_index(op.f('ix_proposal_attachments_proposal_id'), table_name='proposal_attachments')
    op.drop_table('proposal_attachments')
