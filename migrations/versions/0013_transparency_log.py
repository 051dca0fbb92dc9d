"""transparency log

Prepares audit rows to become the entries of the public transparency log
(issue 15):

- ``audit_events.log_index`` (the row's place in the log, NULL until the
  integrator gives it one) and ``audit_events.txid`` (on PostgreSQL the
  inserting transaction's ``txid_current()``, a server default; NULL on SQLite);
- the append-only guard on ``audit_events`` now lets exactly one change
  through: setting a NULL ``log_index``, every other column unchanged;
- ``transparency_checkpoints`` (signed tree heads) and
  ``transparency_cosignatures`` (witnesses' co-signature lines);
- existing rows lose their personal data (e-mail addresses, ORCID iDs, OIDC
  subjects, token names, conflict-of-interest reasons): the payload is
  rewritten and its leaf hash recomputed. Nothing was published before this
  revision, so the log starts clean. The removed values stay where they always
  were (users, api_tokens, oidc_identities, review_assignments).

This file is frozen once committed: it carries its own canonical JSON and leaf
hash rather than importing the application's.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 14:50:00

"""
import hashlib
import json
from typing import Any, Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Keys removed from every event's data, at any depth.
PERSONAL_KEYS = frozenset({"email", "orcid"})
# Keys removed from the data of particular events.
PERSONAL_BY_EVENT = {
    "user.oidc_linked": frozenset({"subject"}),
    "user.oidc_unlinked": frozenset({"subject"}),
    "token.created": frozenset({"name"}),
    "token.revoked": frozenset({"name"}),
    "proposal.conflict_declared": frozenset({"reason"}),
}
# Every column but log_index, which the integrator sets once.
FROZEN_COLUMNS = (
    "id", "event_type", "actor", "subject_type", "subject_id", "occurred_at",
    "canonical_json", "leaf_hash", "txid",
)


def upgrade() -> None:
    """Upgrade schema."""
    postgres = op.get_bind().dialect.name == "postgresql"
    # Plain ALTERs, not a batch: rebuilding the SQLite table would drop its triggers.
    op.add_column('audit_events', sa.Column('log_index', sa.BigInteger(), nullable=True))
    op.add_column('audit_events', sa.Column(
        'txid', sa.BigInteger(), nullable=True,
        server_default=sa.text('txid_current()') if postgres else None,
    ))
    op.create_index(op.f('ix_audit_events_log_index'), 'audit_events', ['log_index'], unique=True)
    op.create_table('transparency_checkpoints',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('root_hash', sa.String(length=64), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(root_hash) = 64', name=op.f('ck_transparency_checkpoints_root_hash_is_sha256')),
    sa.CheckConstraint('size >= 0', name=op.f('ck_transparency_checkpoints_size_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transparency_checkpoints'))
    )
    with op.batch_alter_table('transparency_checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transparency_checkpoints_size'), ['size'], unique=False)
    op.create_table('transparency_cosignatures',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('witness', sa.String(length=200), nullable=False),
    sa.Column('key_id', sa.String(length=8), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('signature', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('size >= 0', name=op.f('ck_transparency_cosignatures_size_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transparency_cosignatures')),
    sa.UniqueConstraint('witness', 'key_id', 'size', name=op.f('uq_transparency_cosignatures_witness_key_id_size'))
    )
    with op.batch_alter_table('transparency_cosignatures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transparency_cosignatures_size'), ['size'], unique=False)
    _drop_update_guard(postgres)
    _scrub_personal_data()
    _guard_all_but_log_index(postgres)


def downgrade() -> None:
    """Downgrade schema; the scrubbed personal data does not come back."""
    postgres = op.get_bind().dialect.name == "postgresql"
    _drop_update_guard(postgres)
    with op.batch_alter_table('transparency_cosignatures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transparency_cosignatures_size'))
    op.drop_table('transparency_cosignatures')
    with op.batch_alter_table('transparency_checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transparency_checkpoints_size'))
    op.drop_table('transparency_checkpoints')
    op.drop_index(op.f('ix_audit_events_log_index'), table_name='audit_events')
    op.drop_column('audit_events', 'txid')
    op.drop_column('audit_events', 'log_index')
    _refuse_every_update(postgres)


def _drop_update_guard(postgres: bool) -> None:
    if postgres:
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS credits_audit_events_guard()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")


def _guard_all_but_log_index(postgres: bool) -> None:
    """DELETE stays refused (and TRUNCATE, whose trigger of 0001 is untouched)."""
    unchanged = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in FROZEN_COLUMNS)
    if postgres:
        op.execute(
            "CREATE FUNCTION credits_audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF TG_OP = 'UPDATE' AND OLD.log_index IS NULL AND NEW.log_index IS NOT NULL "
            f"AND {unchanged} THEN RETURN NEW; END IF; "
            "RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP "
            "USING ERRCODE = 'integrity_constraint_violation'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION credits_audit_events_guard()"
        )
        return
    unchanged_sqlite = unchanged.replace("IS NOT DISTINCT FROM", "IS")
    op.execute(
        "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
        f"WHEN NOT (OLD.log_index IS NULL AND NEW.log_index IS NOT NULL AND {unchanged_sqlite}) "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END"
    )


def _refuse_every_update(postgres: bool) -> None:
    """The guard of 0001 (its function credits_refuse_change still exists)."""
    if postgres:
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION credits_refuse_change()"
        )
        return
    op.execute(
        "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END"
    )


def _scrub_personal_data() -> None:
    connection = op.get_bind()
    events = sa.table(
        "audit_events",
        sa.column("id", sa.BigInteger),
        sa.column("event_type", sa.String),
        sa.column("canonical_json", sa.Text),
        sa.column("leaf_hash", sa.String),
    )
    rows = connection.execute(
        sa.select(events.c.id, events.c.event_type, events.c.canonical_json).order_by(events.c.id)
    ).all()
    for event_id, event_type, canonical in rows:
        document = json.loads(canonical)
        dropped = PERSONAL_KEYS | PERSONAL_BY_EVENT.get(event_type, frozenset())
        document["data"] = _without(document.get("data", {}), dropped)
        rewritten = _canonical_json(document)
        if rewritten == canonical:
            continue
        connection.execute(
            events.update()
            .where(events.c.id == event_id)
            .values(canonical_json=rewritten, leaf_hash=_leaf_hash(rewritten))
        )


def _without(value: Any, keys: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(item, keys) for item in value]
    return value


def _canonical_json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _leaf_hash(canonical: str) -> str:
    return hashlib.sha256(b"\x00" + canonical.encode("utf-8")).hexdigest()
