"""When each token was last used: `fdp registry token --list` shows it, so that unused
tokens can be found and revoked. Tokens made before have none until their next use."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("auth_token", sa.Column("last_used", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auth_token") as batch:
        batch.drop_column("last_used")
