"""labelling

Vendors with effective-dated price sheets, labelling orders with their items,
annotations, unit deliveries (invoice adapter), in-house annotators and their
queue assignments. The ``annotator`` role; dataset provenance that names a
labelling order; usage records keyed by a labelling order.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 14:09:58.572498

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('labelling_vendors',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('adapter', sa.String(length=32), nullable=False),
    sa.Column('task_kinds', sa.JSON(), nullable=False),
    sa.Column('qc_options', sa.JSON(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("adapter IN ('inhouse', 'label_studio', 'invoice')", name=op.f('ck_labelling_vendors_adapter')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labelling_vendors')),
    sa.UniqueConstraint('name', name=op.f('uq_labelling_vendors_name'))
    )
    op.create_table('labelling_price_sheets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('vendor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('unit', sa.String(length=32), nullable=False),
    sa.Column('micro_credits_per_unit', sa.BigInteger(), nullable=False),
    sa.Column('fee_basis_points', sa.Integer(), nullable=False),
    sa.Column('effective_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("unit IN ('item', 'label', 'annotator_hour', 'submission')", name=op.f('ck_labelling_price_sheets_unit')),
    sa.CheckConstraint('fee_basis_points >= 0 AND fee_basis_points <= 10000', name=op.f('ck_labelling_price_sheets_fee_in_range')),
    sa.CheckConstraint('micro_credits_per_unit > 0', name=op.f('ck_labelling_price_sheets_price_positive')),
    sa.ForeignKeyConstraint(['vendor_id'], ['labelling_vendors.id'], name=op.f('fk_labelling_price_sheets_vendor_id_labelling_vendors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labelling_price_sheets')),
    sa.UniqueConstraint('vendor_id', 'effective_from', name=op.f('uq_labelling_price_sheets_vendor_id_effective_from'))
    )
    with op.batch_alter_table('labelling_price_sheets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_labelling_price_sheets_vendor_id'), ['vendor_id'], unique=False)

    op.create_table('labelling_orders',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('project_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('vendor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('instructions', sa.Text(), nullable=False),
    sa.Column('label_schema', sa.JSON(), nullable=False),
    sa.Column('redundancy', sa.Integer(), nullable=False),
    sa.Column('estimate_per_annotation_micro', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source_kind', sa.String(length=32), nullable=False),
    sa.Column('source_version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('source_name', sa.String(length=255), nullable=True),
    sa.Column('target_dataset_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('delivered_version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('price_sheet_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('quoted_units_micro', sa.BigInteger(), nullable=False),
    sa.Column('quoted_micro', sa.BigInteger(), nullable=False),
    sa.Column('hold_key', sa.String(length=200), nullable=True),
    sa.Column('delivered_units_micro', sa.BigInteger(), nullable=False),
    sa.Column('captured_micro', sa.BigInteger(), nullable=False),
    sa.Column('frozen_micro', sa.BigInteger(), nullable=False),
    sa.Column('overage_micro', sa.BigInteger(), nullable=False),
    sa.Column('refunded_micro', sa.BigInteger(), nullable=False),
    sa.Column('flag', sa.Text(), nullable=True),
    sa.Column('dispute_reason', sa.Text(), nullable=True),
    sa.Column('resolution', sa.String(length=16), nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=True),
    sa.Column('external_ref', sa.String(length=200), nullable=True),
    sa.Column('request_key', sa.String(length=400), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('quoted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('placed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disputed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("resolution IS NULL OR resolution IN ('accepted', 'refunded', 'cancelled')", name=op.f('ck_labelling_orders_resolution')),
    sa.CheckConstraint("source_kind IN ('dataset_version', 'upload')", name=op.f('ck_labelling_orders_source_kind')),
    sa.CheckConstraint("status IN ('draft', 'quoted', 'placed', 'in_progress', 'delivered', 'accepted', 'disputed', 'settled', 'cancelled')", name=op.f('ck_labelling_orders_status')),
    sa.CheckConstraint('captured_micro <= quoted_micro', name=op.f('ck_labelling_orders_captured_within_quote')),
    sa.CheckConstraint('quoted_units_micro >= 0 AND quoted_micro >= 0 AND delivered_units_micro >= 0 AND captured_micro >= 0 AND overage_micro >= 0 AND frozen_micro >= 0 AND refunded_micro >= 0', name=op.f('ck_labelling_orders_figures_not_negative')),
    sa.CheckConstraint('redundancy >= 1', name=op.f('ck_labelling_orders_redundancy_positive')),
    sa.ForeignKeyConstraint(['delivered_version_id'], ['dataset_versions.id'], name=op.f('fk_labelling_orders_delivered_version_id_dataset_versions')),
    sa.ForeignKeyConstraint(['price_sheet_id'], ['labelling_price_sheets.id'], name=op.f('fk_labelling_orders_price_sheet_id_labelling_price_sheets')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_labelling_orders_project_id_projects')),
    sa.ForeignKeyConstraint(['source_version_id'], ['dataset_versions.id'], name=op.f('fk_labelling_orders_source_version_id_dataset_versions')),
    sa.ForeignKeyConstraint(['target_dataset_id'], ['datasets.id'], name=op.f('fk_labelling_orders_target_dataset_id_datasets')),
    sa.ForeignKeyConstraint(['vendor_id'], ['labelling_vendors.id'], name=op.f('fk_labelling_orders_vendor_id_labelling_vendors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labelling_orders')),
    sa.UniqueConstraint('hold_key', name=op.f('uq_labelling_orders_hold_key')),
    sa.UniqueConstraint('request_key', name='uq_labelling_orders_request_key')
    )
    with op.batch_alter_table('labelling_orders', schema=None) as batch_op:
        batch_op.create_index('ix_labelling_orders_project_id_status', ['project_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_labelling_orders_source_version_id'), ['source_version_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_labelling_orders_vendor_id'), ['vendor_id'], unique=False)

    op.create_table('labelling_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('blob_sha256', sa.String(length=64), nullable=True),
    sa.Column('media_type', sa.String(length=127), nullable=False),
    sa.Column('is_gold', sa.Boolean(), nullable=False),
    sa.Column('gold_value', sa.JSON(), nullable=True),
    sa.Column('claims', sa.Integer(), nullable=False),
    sa.Column('annotation_count', sa.Integer(), nullable=False),
    sa.Column('external_ref', sa.String(length=200), nullable=True),
    sa.CheckConstraint('(text IS NULL) <> (blob_sha256 IS NULL)', name=op.f('ck_labelling_items_text_or_blob')),
    sa.CheckConstraint('annotation_count <= claims', name=op.f('ck_labelling_items_annotations_within_claims')),
    sa.CheckConstraint('claims >= 0 AND annotation_count >= 0', name=op.f('ck_labelling_items_counts_not_negative')),
    sa.ForeignKeyConstraint(['order_id'], ['labelling_orders.id'], name=op.f('fk_labelling_items_order_id_labelling_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labelling_items')),
    sa.UniqueConstraint('order_id', 'external_id', name=op.f('uq_labelling_items_order_id_external_id')),
    sa.UniqueConstraint('order_id', 'position', name=op.f('uq_labelling_items_order_id_position'))
    )
    op.create_table('labelling_order_annotators',
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('assigned_by', sa.String(length=200), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['labelling_orders.id'], name=op.f('fk_labelling_order_annotators_order_id_labelling_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_labelling_order_annotators_user_id_users')),
    sa.PrimaryKeyConstraint('order_id', 'user_id', name=op.f('pk_labelling_order_annotators'))
    )
    with op.batch_alter_table('labelling_order_annotators', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_labelling_order_annotators_user_id'), ['user_id'], unique=False)

    op.create_table('labelling_annotations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('annotator_ref', sa.String(length=200), nullable=False),
    sa.Column('annotator_pseudonym', sa.String(length=32), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('seconds', sa.Double(), nullable=True),
    sa.Column('delivery_key', sa.String(length=200), nullable=False),
    sa.Column('units_micro', sa.BigInteger(), nullable=False),
    sa.Column('captured_micro', sa.BigInteger(), nullable=False),
    sa.Column('frozen_micro', sa.BigInteger(), nullable=False),
    sa.Column('overage_micro', sa.BigInteger(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('units_micro >= 0 AND captured_micro >= 0 AND overage_micro >= 0 AND frozen_micro >= 0', name=op.f('ck_labelling_annotations_figures_not_negative')),
    sa.ForeignKeyConstraint(['item_id'], ['labelling_items.id'], name=op.f('fk_labelling_annotations_item_id_labelling_items')),
    sa.ForeignKeyConstraint(['order_id'], ['labelling_orders.id'], name=op.f('fk_labelling_annotations_order_id_labelling_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labelling_annotations')),
    sa.UniqueConstraint('item_id', 'annotator_ref', name=op.f('uq_labelling_annotations_item_id_annotator_ref')),
    sa.UniqueConstraint('order_id', 'delivery_key', name=op.f('uq_labelling_annotations_order_id_delivery_key'))
    )
    with op.batch_alter_table('labelling_annotations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_labelling_annotations_item_id'), ['item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_labelling_annotations_order_id'), ['order_id'], unique=False)

    op.create_table('labelling_assignments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('served_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('open', 'done', 'released')", name=op.f('ck_labelling_assignments_status')),
    sa.ForeignKeyConstraint(['item_id'], ['labelling_items.id'], name=op.f('fk_labelling_assignments_item_id_labelling_items')),
    sa.ForeignKeyConstraint(['order_id'], ['labelling_orders.id'], name=op.f('fk_labelling_assignments_order_id_labelling_orders')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_labelling_assignments_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labelling_assignments')),
    sa.UniqueConstraint('item_id', 'user_id', name=op.f('uq_labelling_assignments_item_id_user_id'))
    )
    with op.batch_alter_table('labelling_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_labelling_assignments_order_id'), ['order_id'], unique=False)
        batch_op.create_index('ix_labelling_assignments_user_status', ['user_id', 'status'], unique=False)

    op.create_table('labelling_unit_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('delivery_key', sa.String(length=200), nullable=False),
    sa.Column('units_micro', sa.BigInteger(), nullable=False),
    sa.Column('captured_micro', sa.BigInteger(), nullable=False),
    sa.Column('frozen_micro', sa.BigInteger(), nullable=False),
    sa.Column('overage_micro', sa.BigInteger(), nullable=False),
    sa.Column('usage_record_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('units_micro > 0 AND captured_micro >= 0 AND overage_micro >= 0 AND frozen_micro >= 0', name=op.f('ck_labelling_unit_deliveries_figures_valid')),
    sa.ForeignKeyConstraint(['order_id'], ['labelling_orders.id'], name=op.f('fk_labelling_unit_deliveries_order_id_labelling_orders')),
    sa.ForeignKeyConstraint(['usage_record_id'], ['usage_records.id'], name=op.f('fk_labelling_unit_deliveries_usage_record_id_usage_records')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labelling_unit_deliveries')),
    sa.UniqueConstraint('order_id', 'delivery_key', name=op.f('uq_labelling_unit_deliveries_order_id_delivery_key'))
    )
    with op.batch_alter_table('labelling_unit_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_labelling_unit_deliveries_order_id'), ['order_id'], unique=False)

    with op.batch_alter_table('user_roles', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_user_roles_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_user_roles_role'), "role IN ('researcher', 'reviewer', 'funder', 'ops', 'annotator')")

    with op.batch_alter_table('dataset_provenance', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_dataset_provenance_kind'), type_='check')
        batch_op.drop_constraint(op.f('ck_dataset_provenance_one_subject'), type_='check')
        batch_op.add_column(sa.Column('labelling_order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.create_check_constraint(op.f('ck_dataset_provenance_kind'), "kind IN ('job', 'allocation', 'labelling_order')")
        batch_op.create_check_constraint(op.f('ck_dataset_provenance_one_subject'), "(kind = 'job' AND job_id IS NOT NULL AND allocation_id IS NULL AND labelling_order_id IS NULL) OR (kind = 'allocation' AND allocation_id IS NOT NULL AND job_id IS NULL AND labelling_order_id IS NULL) OR (kind = 'labelling_order' AND labelling_order_id IS NOT NULL AND job_id IS NULL AND allocation_id IS NULL)")
        batch_op.create_index(batch_op.f('ix_dataset_provenance_labelling_order_id'), ['labelling_order_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_dataset_provenance_version_id_labelling_order_id'), ['version_id', 'labelling_order_id'])
        batch_op.create_foreign_key(batch_op.f('fk_dataset_provenance_labelling_order_id_labelling_orders'), 'labelling_orders', ['labelling_order_id'], ['id'])

    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('labelling_order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.create_index(batch_op.f('ix_usage_records_labelling_order_id'), ['labelling_order_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_usage_records_labelling_order_id_labelling_orders'), 'labelling_orders', ['labelling_order_id'], ['id'])



def downgrade() -> None:
    """Downgrade schema: labelling provenance rows and annotator roles go with it."""
    op.execute("DELETE FROM dataset_provenance WHERE kind = 'labelling_order'")
    op.execute("DELETE FROM user_roles WHERE role = 'annotator'")
    with op.batch_alter_table('user_roles', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_user_roles_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_user_roles_role'), "role IN ('researcher', 'reviewer', 'funder', 'ops')")

    with op.batch_alter_table('dataset_provenance', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_dataset_provenance_kind'), type_='check')
        batch_op.drop_constraint(op.f('ck_dataset_provenance_one_subject'), type_='check')
        batch_op.create_check_constraint(op.f('ck_dataset_provenance_kind'), "kind IN ('job', 'allocation')")
        batch_op.create_check_constraint(op.f('ck_dataset_provenance_one_subject'), "(kind = 'job' AND job_id IS NOT NULL AND allocation_id IS NULL) OR (kind = 'allocation' AND allocation_id IS NOT NULL AND job_id IS NULL)")

    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_usage_records_labelling_order_id_labelling_orders'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_usage_records_labelling_order_id'))
        batch_op.drop_column('labelling_order_id')

    with op.batch_alter_table('dataset_provenance', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_dataset_provenance_labelling_order_id_labelling_orders'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_dataset_provenance_version_id_labelling_order_id'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_dataset_provenance_labelling_order_id'))
        batch_op.drop_column('labelling_order_id')

    with op.batch_alter_table('labelling_unit_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_labelling_unit_deliveries_order_id'))

    op.drop_table('labelling_unit_deliveries')
    with op.batch_alter_table('labelling_assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_labelling_assignments_user_status')
        batch_op.drop_index(batch_op.f('ix_labelling_assignments_order_id'))

    op.drop_table('labelling_assignments')
    with op.batch_alter_table('labelling_annotations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_labelling_annotations_order_id'))
        batch_op.drop_index(batch_op.f('ix_labelling_annotations_item_id'))

    op.drop_table('labelling_annotations')
    with op.batch_alter_table('labelling_order_annotators', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_labelling_order_annotators_user_id'))

    op.drop_table('labelling_order_annotators')
    op.drop_table('labelling_items')
    with op.batch_alter_table('labelling_orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_labelling_orders_vendor_id'))
        batch_op.drop_index(batch_op.f('ix_labelling_orders_source_version_id'))
        batch_op.drop_index('ix_labelling_orders_project_id_status')

    op.drop_table('labelling_orders')
    with op.batch_alter_table('labelling_price_sheets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_labelling_price_sheets_vendor_id'))

    op.drop_table('labelling_price_sheets')
    op.drop_table('labelling_vendors')
