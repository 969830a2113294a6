"""api_tokens: API token records (only the token's SHA-256; the signing secret sealed)."""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE api_tokens (
    token_id text COLLATE "C" PRIMARY KEY,
    token_hash text COLLATE "C" NOT NULL UNIQUE,
    token_prefix text NOT NULL,
    tenant_id text COLLATE "C" NOT NULL,
    tier text NOT NULL,
    scopes text[] NOT NULL,
    secret_sealed bytea NOT NULL,
    created_at bigint NOT NULL,
    org_id text,
    app_id text,
    revoked_at bigint,
    rotated_at bigint
)""")
    op.execute("CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id, created_at DESC)")


def downgrade() -> None:
    op.execute("DROP TABLE api_tokens")
