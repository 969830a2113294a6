"""tenant_retention: per-tenant retention hours set through the admin API."""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE tenant_retention (tenant_id text COLLATE \"C\" PRIMARY KEY, hours integer NOT NULL, "
               "updated_at timestamptz NOT NULL DEFAULT now())")


def downgrade() -> None:
    op.execute("DROP TABLE tenant_retention")
