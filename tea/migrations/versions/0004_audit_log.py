"""audit_log: authentication failures, token and admin actions ("at" in UTC µs)."""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE audit_log (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    "at" bigint NOT NULL,
    action text COLLATE "C" NOT NULL,
    actor text,
    tenant_id text COLLATE "C",
    remote_addr text,
    success boolean NOT NULL,
    reason text,
    details json NOT NULL
)""")
    op.execute('CREATE INDEX audit_log_at ON audit_log ("at" DESC)')


def downgrade() -> None:
    op.execute("DROP TABLE audit_log")
