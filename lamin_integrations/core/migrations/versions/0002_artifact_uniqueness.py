"""Artifact uniqueness: one row per content at a location, so concurrent saves converge

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_KEYED = "key IS NOT NULL AND hash IS NOT NULL AND branch_id != -1"
_UNKEYED = "key IS NULL AND hash IS NOT NULL AND branch_id != -1"


def upgrade() -> None:
    op.create_index("uq_artifact_storage_key_hash", "artifact", ["storage_id", "key", "hash"], unique=True,
                    sqlite_where=sa.text(_KEYED), postgresql_where=sa.text(_KEYED))
    op.create_index("uq_artifact_storage_hash_nokey", "artifact", ["storage_id", "hash"], unique=True,
                    sqlite_where=sa.text(_UNKEYED), postgresql_where=sa.text(_UNKEYED))


def downgrade() -> None:
    op.drop_index("uq_artifact_storage_hash_nokey", "artifact")
    op.drop_index("uq_artifact_storage_key_hash", "artifact")
