"""Leaner run indexes: status and branch only where they differ from the usual value, no creator index

Revision ID: 0004
Revises: 0003

Nearly every run is completed and on the main branch, and a registry has few users: full
indexes of `_status_code`, `branch_id` and `created_by_id` were as large as the table, were
updated on every insert (a 100,000-task Nextflow trace wrote them 300,000 times) and never
helped to read the usual value. `_status_code` and `branch_id` keep partial indexes over
the other values (unfinished, errored and aborted runs; archive and trash), which is what
`runs reap`, status lookups and trash listings read; `created_by_id` loses its index.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_STATUS = "_status_code != 0"
_BRANCH = "branch_id != 1"


def upgrade() -> None:
    op.drop_index("ix_run__status_code", table_name="run")
    op.drop_index("ix_run_branch_id", table_name="run")
    op.drop_index("ix_run_created_by_id", table_name="run")
    op.create_index("ix_run__status_code", "run", ["_status_code"], sqlite_where=sa.text(_STATUS),
                    postgresql_where=sa.text(_STATUS))
    op.create_index("ix_run_branch_id", "run", ["branch_id"], sqlite_where=sa.text(_BRANCH),
                    postgresql_where=sa.text(_BRANCH))


def downgrade() -> None:
    op.drop_index("ix_run__status_code", table_name="run")
    op.drop_index("ix_run_branch_id", table_name="run")
    op.create_index("ix_run__status_code", "run", ["_status_code"])
    op.create_index("ix_run_branch_id", "run", ["branch_id"])
    op.create_index("ix_run_created_by_id", "run", ["created_by_id"])
