"""Provisional records: what a running job wrote, kept apart until the job ends.

A job (known by its token's digest) is noted with the process that runs it; each record
written under its token is noted as provisional in the same transaction. The job's end
either keeps them (exit 0) or deletes them, and records of a job whose process is gone are
deleted by the next command that opens the registry.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provisional_job",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "provisional_record",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("type_name", sa.Text(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_provisional_record_job", "provisional_record", ["job"])
    op.create_index(
        "ix_provisional_record_record", "provisional_record", ["type_name", "record_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_provisional_record_record", table_name="provisional_record")
    op.drop_index("ix_provisional_record_job", table_name="provisional_record")
    op.drop_table("provisional_record")
    op.drop_table("provisional_job")
