"""Indexes for the look-ups every up-to-date check makes, so they cost the same at any size.

A data product is looked up by namespace and name, newest first (the versions of a name).
With an index on the namespace alone, SQLite walked that index, already in id order, over
every product of the namespace rather than sort the few of that name: a check of N outputs
cost N x N. An index on (namespace, name) holds each name's rows in id order, so the look-up
reads only them. A file of the local data store is looked up by its storage root and path.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_data_product_namespace_name", "data_product", ["namespace_id", "name"])
    op.create_index(
        "ix_storage_location_root_path", "storage_location", ["storage_root_id", "path"]
    )


def downgrade() -> None:
    op.drop_index("ix_storage_location_root_path", table_name="storage_location")
    op.drop_index("ix_data_product_namespace_name", table_name="data_product")
