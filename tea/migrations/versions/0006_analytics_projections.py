"""user_activity, endpoint_usage, feature_usage: the seed Telemetry Processor's analytics tables,
written from OTLP spans (timestamps in UTC µs)."""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COMMON = ('tenant_id text COLLATE "C" NOT NULL, id uuid NOT NULL, "timestamp" bigint NOT NULL, '
          'user_id text COLLATE "C", organization_id text COLLATE "C", deployment_type text COLLATE "C", '
          'event_metadata json, created_at bigint NOT NULL')


def upgrade() -> None:
    op.execute(f'CREATE TABLE user_activity ({COMMON}, event_type text COLLATE "C" NOT NULL, '
               'session_id text COLLATE "C")')
    op.execute(f'CREATE TABLE endpoint_usage ({COMMON}, endpoint text COLLATE "C" NOT NULL, '
               'method text COLLATE "C", status_code integer, duration_ms double precision)')
    op.execute(f'CREATE TABLE feature_usage ({COMMON}, feature_name text COLLATE "C" NOT NULL, '
               'action text COLLATE "C")')
    for table in ("user_activity", "endpoint_usage", "feature_usage"):
        op.execute(f'CREATE INDEX {table}_tenant_time ON {table} (tenant_id, "timestamp" DESC)')


def downgrade() -> None:
    op.execute("DROP TABLE feature_usage, endpoint_usage, user_activity")
