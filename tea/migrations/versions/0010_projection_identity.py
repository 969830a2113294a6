"""user_activity, endpoint_usage, feature_usage: a row is stored once per (tenant_id, id, timestamp) — a
unique index, so a replayed or resent event's derived row is skipped (INSERT … ON CONFLICT DO NOTHING)."""
from alembic import op

revision = "0010_projection_identity"
down_revision = "0009_signals"
branch_labels = None
depends_on = None

TABLES = ("user_activity", "endpoint_usage", "feature_usage")


def upgrade() -> None:
    for table in TABLES:
        # (rows stored twice before the index existed: one of each is kept)
        op.execute(f'DELETE FROM {table} a USING {table} b WHERE a.tenant_id = b.tenant_id AND a.id = b.id '
                   f'AND a."timestamp" = b."timestamp" AND a.ctid > b.ctid')
        op.execute(f'CREATE UNIQUE INDEX {table}_identity ON {table} (tenant_id, id, "timestamp")')


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP INDEX {table}_identity")
