"""events: the wide event table, RANGE-partitioned by day on "timestamp" (UTC µs).

Partitions (events_YYYYMMDD) are created by the backend before it writes a day, and dropped whole
by retention. Text columns use the "C" collation: byte order is code-point order, as everywhere else
in TEA (pagination cursors, top-N ties), and it is the cheapest to index.
"""
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE events (
    event_id text COLLATE "C" NOT NULL,
    tenant_id text COLLATE "C" NOT NULL,
    "timestamp" bigint NOT NULL,
    received_at bigint NOT NULL,
    event_type text COLLATE "C" NOT NULL,
    source text COLLATE "C",
    source_protocol text COLLATE "C",
    user_id text COLLATE "C",
    session_id text COLLATE "C",
    organization text COLLATE "C",
    method text COLLATE "C",
    target text COLLATE "C",
    protocol text COLLATE "C",
    status text COLLATE "C",
    status_code integer,
    duration_ms double precision,
    request_size bigint,
    response_size bigint,
    tokens_used bigint,
    cost double precision,
    error_type text COLLATE "C",
    error_message text,
    trace_id text COLLATE "C",
    span_id text COLLATE "C",
    parent_span_id text COLLATE "C",
    correlation_id text COLLATE "C",
    tags text[] COLLATE "C" NOT NULL DEFAULT '{}',
    attributes jsonb NOT NULL DEFAULT '{}'
) PARTITION BY RANGE ("timestamp")""")
    op.execute("COMMENT ON TABLE events IS 'TEA events; \"timestamp\" and received_at are UTC microseconds since "
               "1970 (to_timestamp(\"timestamp\" / 1e6)); one partition events_YYYYMMDD per UTC day'")
    # tenant-scoped pages and time ranges; the dedup lookup and event_id reads; per-type reads; traces
    op.execute('CREATE INDEX events_tenant_time ON events (tenant_id, "timestamp" DESC, event_id DESC)')
    op.execute('CREATE INDEX events_tenant_event_id ON events (tenant_id, event_id)')
    op.execute('CREATE INDEX events_tenant_type_time ON events (tenant_id, event_type, "timestamp")')
    op.execute("CREATE INDEX events_trace_id ON events (trace_id) WHERE trace_id IS NOT NULL")
    op.execute("CREATE INDEX events_correlation_id ON events (correlation_id) WHERE correlation_id IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP TABLE events")
