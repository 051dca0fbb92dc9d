"""identity change notifications

On PostgreSQL, every change that alters who an API token stands for (a token
revoked, expired, re-scoped or deleted; a user deactivated, renamed by email or
deleted; a role granted or revoked) sends a notification on the channel
``credits_identity`` when its transaction commits. Web workers that keep the
identities of recent tokens in memory listen there and forget them at once
(credits/identity/token_cache.py). Recording a token's last use sends nothing.
SQLite has no notifications and web workers there keep no such memory.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 23:30:00

"""

from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = "0021"
down_revision: Union[str, Sequence[str], None] = "0020"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

CHANNEL = "credits_identity"

UPGRADE = [
    f"""
    CREATE FUNCTION credits_notify_identity_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
        RETURN NULL;
    END
    $$
    """,
    # A token's last use is written once a minute per token: it alone notifies nothing.
    """
    CREATE TRIGGER api_tokens_identity_changed
    AFTER UPDATE ON api_tokens FOR EACH ROW
    WHEN ((OLD.id, OLD.user_id, OLD.prefix, OLD.secret_hash, OLD.scopes,
           OLD.expires_at, OLD.revoked_at)
          IS DISTINCT FROM
          (NEW.id, NEW.user_id, NEW.prefix, NEW.secret_hash, NEW.scopes,
           NEW.expires_at, NEW.revoked_at))
    EXECUTE FUNCTION credits_notify_identity_changed()
    """,
    """
    CREATE TRIGGER api_tokens_identity_removed
    AFTER DELETE OR TRUNCATE ON api_tokens FOR EACH STATEMENT
    EXECUTE FUNCTION credits_notify_identity_changed()
    """,
    """
    CREATE TRIGGER users_identity_changed
    AFTER UPDATE ON users FOR EACH ROW
    WHEN ((OLD.id, OLD.email, OLD.is_active) IS DISTINCT FROM (NEW.id, NEW.email, NEW.is_active))
    EXECUTE FUNCTION credits_notify_identity_changed()
    """,
    """
    CREATE TRIGGER users_identity_removed
    AFTER DELETE OR TRUNCATE ON users FOR EACH STATEMENT
    EXECUTE FUNCTION credits_notify_identity_changed()
    """,
    """
    CREATE TRIGGER user_roles_identity_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON user_roles FOR EACH STATEMENT
    EXECUTE FUNCTION credits_notify_identity_changed()
    """,
]

DOWNGRADE = [
    "DROP TRIGGER user_roles_identity_changed ON user_roles",
    "DROP TRIGGER users_identity_removed ON users",
    "DROP TRIGGER users_identity_changed ON users",
    "DROP TRIGGER api_tokens_identity_removed ON api_tokens",
    "DROP TRIGGER api_tokens_identity_changed ON api_tokens",
    "DROP FUNCTION credits_notify_identity_changed()",
]


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in DOWNGRADE:
        op.execute(statement)
