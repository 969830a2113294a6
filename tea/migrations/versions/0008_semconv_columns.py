"""events: the MCP and GenAI semantic conventions as columns — tool (gen_ai.tool.name), model
(gen_ai.request.model), input_tokens and output_tokens — appended (every day partition follows)."""
from alembic import op

revision = "0008_semconv"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute('ALTER TABLE events ADD COLUMN tool text COLLATE "C", ADD COLUMN model text COLLATE "C", '
               "ADD COLUMN input_tokens bigint, ADD COLUMN output_tokens bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE events DROP COLUMN tool, DROP COLUMN model, DROP COLUMN input_tokens, "
               "DROP COLUMN output_tokens")
