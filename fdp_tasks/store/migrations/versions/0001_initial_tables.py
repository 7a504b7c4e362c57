"""The registry as the first release laid it out: one table per record type of the data
model, a link table per many-to-many field, and the token digests.

A fixed snapshot of the tables Store built before migrations existed; a database made then is
recognised and stamped with this revision. Date-times were ISO 8601 text here (0002 makes them
timestamps).
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = [
    "author",
    "file_type",
    "issue",
    "namespace",
    "storage_root",
    "users",
    "auth_token",
    "storage_location",
    "user_author",
    "object",
    "code_repo_release",
    "code_run",
    "data_product",
    "key_value",
    "keyword",
    "licence",
    "object__authors",
    "object_component",
    "quality_controlled",
    "code_run__inputs",
    "code_run__outputs",
    "external_object",
    "issue__component_issues",
]


def upgrade() -> None:
    op.create_table(
        "author",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("identifier", sa.Text(), nullable=True),
        sa.Column("uuid", sa.String(length=36), nullable=True),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("identifier", name="uq_author_identifier"),
        sa.UniqueConstraint("uuid", name="uq_author_uuid"),
    )
    op.create_index("ix_author_name", "author", ["name"], unique=False)
    op.create_table(
        "file_type",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("extension", sa.Text(), nullable=False),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "extension", name="uq_file_type_name_extension"),
    )
    op.create_index("ix_file_type_name", "file_type", ["name"], unique=False)
    op.create_table(
        "issue",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("severity", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("uuid", sa.String(length=36), nullable=True),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid", name="uq_issue_uuid"),
    )
    op.create_table(
        "namespace",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("full_name", sa.Text(), nullable=True),
        sa.Column("website", sa.Text(), nullable=True),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("full_name", name="uq_namespace_full_name"),
        sa.UniqueConstraint("name", name="uq_namespace_name"),
    )
    op.create_index("ix_namespace_name", "namespace", ["name"], unique=False)
    op.create_table(
        "storage_root",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("root", sa.Text(), nullable=False),
        sa.Column("local", sa.Boolean(), nullable=True),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("root", name="uq_storage_root_root"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("full_name", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_index("ix_users_username", "users", ["username"], unique=False)
    op.create_table(
        "auth_token",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "storage_location",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=True),
        sa.Column("storage_root_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["storage_root_id"],
            ["storage_root.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "storage_root_id", "hash", "public", name="uq_storage_location_storage_root_hash_public"
        ),
    )
    op.create_index("ix_storage_location_hash", "storage_location", ["hash"], unique=False)
    op.create_index(
        ("ix_storage_location_storage_root_id"),
        "storage_location",
        ["storage_root_id"],
        unique=False,
    )
    op.create_table(
        "user_author",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["author.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", name="uq_user_author_user"),
    )
    op.create_index(("ix_user_author_author_id"), "user_author", ["author_id"], unique=False)
    op.create_index(("ix_user_author_user_id"), "user_author", ["user_id"], unique=False)
    op.create_table(
        "object",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("storage_location_id", sa.Integer(), nullable=True),
        sa.Column("file_type_id", sa.Integer(), nullable=True),
        sa.Column("uuid", sa.String(length=36), nullable=True),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["file_type_id"],
            ["file_type.id"],
        ),
        sa.ForeignKeyConstraint(
            ["storage_location_id"],
            ["storage_location.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid", name="uq_object_uuid"),
    )
    op.create_index(("ix_object_file_type_id"), "object", ["file_type_id"], unique=False)
    op.create_index(
        ("ix_object_storage_location_id"), "object", ["storage_location_id"], unique=False
    )
    op.create_table(
        "code_repo_release",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("website", sa.Text(), nullable=True),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["object.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version", name="uq_code_repo_release_name_version"),
        sa.UniqueConstraint("object_id", name="uq_code_repo_release_object"),
    )
    op.create_index("ix_code_repo_release_name", "code_repo_release", ["name"], unique=False)
    op.create_index(
        ("ix_code_repo_release_object_id"), "code_repo_release", ["object_id"], unique=False
    )
    op.create_table(
        "code_run",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_date", sa.String(length=40), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("code_repo_id", sa.Integer(), nullable=True),
        sa.Column("model_config_id", sa.Integer(), nullable=True),
        sa.Column("submission_script_id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=True),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["code_repo_id"],
            ["object.id"],
        ),
        sa.ForeignKeyConstraint(
            ["model_config_id"],
            ["object.id"],
        ),
        sa.ForeignKeyConstraint(
            ["submission_script_id"],
            ["object.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid", name="uq_code_run_uuid"),
    )
    op.create_index(("ix_code_run_code_repo_id"), "code_run", ["code_repo_id"], unique=False)
    op.create_index(("ix_code_run_model_config_id"), "code_run", ["model_config_id"], unique=False)
    op.create_index(
        ("ix_code_run_submission_script_id"), "code_run", ["submission_script_id"], unique=False
    )
    op.create_table(
        "data_product",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespace.id"],
        ),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["object.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "namespace_id", "name", "version", name="uq_data_product_namespace_name_version"
        ),
    )
    op.create_index("ix_data_product_name", "data_product", ["name"], unique=False)
    op.create_index(
        ("ix_data_product_namespace_id"), "data_product", ["namespace_id"], unique=False
    )
    op.create_index(("ix_data_product_object_id"), "data_product", ["object_id"], unique=False)
    op.create_table(
        "key_value",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["object.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_id", "key", name="uq_key_value_object_key"),
    )
    op.create_index("ix_key_value_key", "key_value", ["key"], unique=False)
    op.create_index(("ix_key_value_object_id"), "key_value", ["object_id"], unique=False)
    op.create_table(
        "keyword",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("keyphrase", sa.Text(), nullable=False),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["object.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_id", "keyphrase", name="uq_keyword_object_keyphrase"),
    )
    op.create_index("ix_keyword_keyphrase", "keyword", ["keyphrase"], unique=False)
    op.create_index(("ix_keyword_object_id"), "keyword", ["object_id"], unique=False)
    op.create_table(
        "licence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("licence_info", sa.Text(), nullable=False),
        sa.Column("identifier", sa.Text(), nullable=True),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["object.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_id", "licence_info", name="uq_licence_object_licence_info"),
    )
    op.create_index(("ix_licence_object_id"), "licence", ["object_id"], unique=False)
    op.create_table(
        "object__authors",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["object.id"],
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["author.id"],
        ),
        sa.PrimaryKeyConstraint("owner_id", "target_id"),
    )
    op.create_index("ix_object__authors_target", "object__authors", ["target_id"], unique=False)
    op.create_table(
        "object_component",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("whole_object", sa.Boolean(), nullable=True),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["object.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_id", "name", name="uq_object_component_object_name"),
    )
    op.create_index("ix_object_component_name", "object_component", ["name"], unique=False)
    op.create_index(
        ("ix_object_component_object_id"), "object_component", ["object_id"], unique=False
    )
    op.create_table(
        "quality_controlled",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["object.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_id", name="uq_quality_controlled_object"),
    )
    op.create_index(
        ("ix_quality_controlled_object_id"), "quality_controlled", ["object_id"], unique=False
    )
    op.create_table(
        "code_run__inputs",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["code_run.id"],
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["object_component.id"],
        ),
        sa.PrimaryKeyConstraint("owner_id", "target_id"),
    )
    op.create_index("ix_code_run__inputs_target", "code_run__inputs", ["target_id"], unique=False)
    op.create_table(
        "code_run__outputs",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["code_run.id"],
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["object_component.id"],
        ),
        sa.PrimaryKeyConstraint("owner_id", "target_id"),
    )
    op.create_index("ix_code_run__outputs_target", "code_run__outputs", ["target_id"], unique=False)
    op.create_table(
        "external_object",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("data_product_id", sa.Integer(), nullable=False),
        sa.Column("identifier", sa.Text(), nullable=True),
        sa.Column("alternate_identifier", sa.Text(), nullable=True),
        sa.Column("alternate_identifier_type", sa.Text(), nullable=True),
        sa.Column("primary_not_supplement", sa.Boolean(), nullable=True),
        sa.Column("release_date", sa.String(length=40), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("original_store_id", sa.Integer(), nullable=True),
        sa.Column("last_updated", sa.String(length=40), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["data_product_id"],
            ["data_product.id"],
        ),
        sa.ForeignKeyConstraint(
            ["original_store_id"],
            ["storage_location.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("data_product_id", name="uq_external_object_data_product"),
    )
    op.create_index(
        ("ix_external_object_data_product_id"), "external_object", ["data_product_id"], unique=False
    )
    op.create_index(
        ("ix_external_object_original_store_id"),
        "external_object",
        ["original_store_id"],
        unique=False,
    )
    op.create_table(
        "issue__component_issues",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["issue.id"],
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["object_component.id"],
        ),
        sa.PrimaryKeyConstraint("owner_id", "target_id"),
    )
    op.create_index(
        "ix_issue__component_issues_target", "issue__component_issues", ["target_id"], unique=False
    )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
