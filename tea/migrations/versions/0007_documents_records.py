"""documents and records: registry entities, alert rules and states (documents keyed by kind, tenant,
key); state transitions, registration audit, alert history (append-only records)."""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute('CREATE TABLE documents (kind text COLLATE "C" NOT NULL, tenant_id text COLLATE "C" NOT NULL, '
               'key text COLLATE "C" NOT NULL, doc json NOT NULL, PRIMARY KEY (kind, tenant_id, key))')
    op.execute('CREATE TABLE records (seq bigint GENERATED ALWAYS AS IDENTITY, kind text COLLATE "C" NOT NULL, '
               'tenant_id text COLLATE "C" NOT NULL, "at" bigint NOT NULL, body json NOT NULL)')
    op.execute('CREATE INDEX records_kind_at ON records (kind, "at" DESC, seq DESC)')


def downgrade() -> None:
    op.execute("DROP TABLE records, documents")
