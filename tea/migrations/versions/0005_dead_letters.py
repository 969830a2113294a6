"""dead_letters: batches a processor gave up on, kept for inspection and replay."""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE dead_letters (
    id text COLLATE "C" PRIMARY KEY,
    "at" bigint NOT NULL,
    stage text NOT NULL,
    error text NOT NULL,
    attempts integer NOT NULL,
    event_count integer NOT NULL,
    payload text NOT NULL,
    replayed_at bigint
)""")


def downgrade() -> None:
    op.execute("DROP TABLE dead_letters")
