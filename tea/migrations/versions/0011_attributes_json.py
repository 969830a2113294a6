"""events.attributes: json instead of jsonb, so an event's attributes read back as they were sent.

jsonb rewrites numbers as numerics (1.7976931348623157e308 comes back as a 309-digit integer, -0.0 as
0) and reorders keys; json keeps the text and still answers ->, ->> and json_to_record."""
from alembic import op

revision = "0011_attributes_json"
down_revision = "0010_projection_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE events ALTER COLUMN attributes DROP DEFAULT")
    op.execute("ALTER TABLE events ALTER COLUMN attributes TYPE json USING attributes::json")
    op.execute("ALTER TABLE events ALTER COLUMN attributes SET DEFAULT '{}'")


def downgrade() -> None:
    op.execute("ALTER TABLE events ALTER COLUMN attributes DROP DEFAULT")
    op.execute("ALTER TABLE events ALTER COLUMN attributes TYPE jsonb USING attributes::jsonb")
    op.execute("ALTER TABLE events ALTER COLUMN attributes SET DEFAULT '{}'")
