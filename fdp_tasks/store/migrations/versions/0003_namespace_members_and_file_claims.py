"""Namespace members and file claims: who may write in a namespace, and who asked to keep
(and who sent) a file's bytes on the registry.

Existing namespaces get their creator (`updated_by`) as their member, and the creator of
each existing storage location a claim, as uploader (and publisher, for a public one), on the
bytes it names: what people did before keeps working for them, and for nobody else.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    members = op.create_table(
        "namespace_member",
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("added", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["namespace_id"], ["namespace.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("namespace_id", "user_id"),
    )
    claims = op.create_table(
        "file_claim",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("uploaded", sa.Boolean(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("hash", "user_id"),
    )
    users = sa.table("users", sa.column("id", sa.Integer()))
    namespace = sa.table(
        "namespace",
        sa.column("id", sa.Integer()),
        sa.column("updated_by_id", sa.Integer()),
        sa.column("last_updated", sa.DateTime(timezone=True)),
    )
    location = sa.table(
        "storage_location",
        sa.column("hash", sa.Text()),
        sa.column("public", sa.Boolean()),
        sa.column("updated_by_id", sa.Integer()),
        sa.column("last_updated", sa.DateTime(timezone=True)),
    )
    now = sa.func.current_timestamp()
    known_user = sa.select(users.c.id)
    op.execute(
        members.insert().from_select(
            ["namespace_id", "user_id", "added"],
            sa.select(
                namespace.c.id,
                namespace.c.updated_by_id,
                sa.func.coalesce(namespace.c.last_updated, now),
            ).where(namespace.c.updated_by_id.in_(known_user)),
        )
    )
    op.execute(
        claims.insert().from_select(
            ["hash", "user_id", "uploaded", "published", "created"],
            sa.select(
                location.c.hash,
                location.c.updated_by_id,
                sa.true(),
                sa.func.max(sa.case((location.c.public.is_(True), 1), else_=0)) == 1,
                sa.func.coalesce(sa.func.min(location.c.last_updated), now),
            )
            .where(location.c.updated_by_id.in_(known_user))
            .group_by(location.c.hash, location.c.updated_by_id),
        )
    )


def downgrade() -> None:
    op.drop_table("file_claim")
    op.drop_table("namespace_member")
