"""metric_points and log_records: OTLP metric data points and log records as typed rows, one row per
(tenant_id, id) — the id derives from the point or record, so a replay stores nothing twice."""
from alembic import op

revision = "0009_signals"
down_revision = "0008_semconv"
branch_labels = None
depends_on = None

_COUNT = "numeric(20, 0)"  # OTLP counts are uint64


def upgrade() -> None:
    op.execute(f"""
CREATE TABLE metric_points (
    tenant_id text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL, "timestamp" bigint NOT NULL,
    received_at bigint NOT NULL, service text COLLATE "C", name text COLLATE "C" NOT NULL, kind text NOT NULL,
    unit text NOT NULL, temporality text, monotonic boolean, start_us bigint, value float8, count {_COUNT},
    sum float8, min float8, max float8, bounds float8[], counts {_COUNT}[], scale integer, zero_count {_COUNT},
    positive_offset integer, positive_counts {_COUNT}[], negative_offset integer, negative_counts {_COUNT}[],
    quantiles float8[], flags bigint, attributes json NOT NULL, resource json NOT NULL, scope text,
    PRIMARY KEY (tenant_id, id))""")
    op.execute('CREATE INDEX metric_points_tenant_name_time ON metric_points (tenant_id, name, "timestamp")')
    op.execute('CREATE INDEX metric_points_time ON metric_points ("timestamp")')
    op.execute("""
CREATE TABLE log_records (
    tenant_id text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL, "timestamp" bigint NOT NULL,
    received_at bigint NOT NULL, service text COLLATE "C", severity_number integer NOT NULL,
    severity_text text NOT NULL, body text, body_json boolean NOT NULL, observed_us bigint, event_name text,
    flags bigint, attributes json NOT NULL, resource json NOT NULL, scope text, trace_id text COLLATE "C",
    span_id text COLLATE "C", PRIMARY KEY (tenant_id, id))""")
    op.execute('CREATE INDEX log_records_tenant_time ON log_records (tenant_id, "timestamp" DESC, id DESC)')
    op.execute("CREATE INDEX log_records_trace_id ON log_records (trace_id) WHERE trace_id IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP TABLE log_records, metric_points")
