"""checkpointable jobs

A job may be checkpointable: the platform may stop it with its grace
(SIGTERM, the grace, SIGKILL) and restart it on other nodes, keeping its
hold. The job keeps that and its moves; a move in flight keeps its target;
a run stopped for a move keeps when its stop was asked (charging ends
there); each move is a row of job_moves; a flavour caps the grace.

Plain ALTERs (SQLite has ADD and DROP COLUMN), so no table is rebuilt.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 18:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('pool_flavours', sa.Column(
        'max_checkpoint_grace_seconds', sa.Integer(), server_default='300', nullable=False,
    ))
    op.add_column('jobs', sa.Column(
        'checkpointable', sa.Boolean(), server_default=sa.false(), nullable=False,
    ))
    op.add_column('jobs', sa.Column(
        'checkpoint_grace_seconds', sa.Integer(), server_default='0', nullable=False,
    ))
    op.add_column('jobs', sa.Column('move_count', sa.Integer(), server_default='0', nullable=False))
    op.add_column('jobs', sa.Column('move_target_json', sa.Text(), nullable=True))
    op.add_column('job_runs', sa.Column(
        'stop_requested_at', sa.DateTime(timezone=True), nullable=True,
    ))
    op.create_table('job_moves',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('job_id', BIG_ID, nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('for_job_id', sa.BigInteger(), nullable=True),
    sa.Column('from_attempt', sa.Integer(), nullable=False),
    sa.Column('from_placement_json', sa.Text(), nullable=False),
    sa.Column('to_placement_json', sa.Text(), nullable=False),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('to_attempt', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_moves_job_id_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_moves')),
    sa.UniqueConstraint('job_id', 'number', name=op.f('uq_job_moves_job_id_number'))
    )
    op.create_index(op.f('ix_job_moves_job_id'), 'job_moves', ['job_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_job_moves_job_id'), table_name='job_moves')
    op.drop_table('job_moves')
    op.drop_column('job_runs', 'stop_requested_at')
    for column in ('move_target_json', 'move_count', 'checkpoint_grace_seconds', 'checkpointable'):
        op.drop_column('jobs', column)
    op.drop_column('pool_flavours', 'max_checkpoint_grace_seconds')
