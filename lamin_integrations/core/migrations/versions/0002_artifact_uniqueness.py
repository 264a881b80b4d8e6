"""Artifact uniqueness: one row per content at a location, so concurrent saves converge

Revision ID: 0002
Revises: 0001

Registries at 0001 had no such rule, and concurrent writers could register the same content
at the same place twice (same storage, key and hash; or same storage and hash without a
key). Those duplicates are merged first, without losing lineage or metadata:

- per group the kept row is the lowest id whose bytes were fully stored (`_storage_ongoing`
  false), else the lowest id;
- every reference to a duplicate is moved to the kept row: run inputs, recreated outputs,
  project links (a link the kept row already has is not doubled) and a run's environment,
  plan and report;
- the kept row takes the creating run of the first duplicate that has one if it had none
  (as a save does for a row registered outside any run); every other run that created a
  duplicate becomes a run that recreated the kept row (`run_recreated_artifact`), so it
  stays reachable as a producer in lineage;
- the kept row becomes the latest version if a duplicate was and no other live row at its
  key is;
- the duplicates go to the trash (branch_id -1), which the unique indexes leave out: their
  uid, description, version, creating run and bytes location stay readable.

A registry without duplicates is not touched beyond the two new indexes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_KEYED = "key IS NOT NULL AND hash IS NOT NULL AND branch_id != -1"
_UNKEYED = "key IS NULL AND hash IS NOT NULL AND branch_id != -1"

# Rows the two indexes would cover, grouped as they would collide. NULL storage ids never
# collide in a unique index, so they are left alone; GROUP BY puts all NULL keys together,
# which is the keyless index's rule.
_GROUPS = """
    SELECT storage_id, key, hash,
           COALESCE(MIN(CASE WHEN _storage_ongoing = FALSE THEN id END), MIN(id)) AS keep_id
    FROM artifact
    WHERE hash IS NOT NULL AND storage_id IS NOT NULL AND branch_id != -1
    GROUP BY storage_id, key, hash
    HAVING COUNT(*) > 1
"""

# Link tables to artifact with a unique (other, artifact_id) pair.
_LINKS = (("run_input_artifact", "run_id"), ("run_recreated_artifact", "run_id"), ("project_artifact", "project_id"))
_RUN_COLUMNS = ("environment_id", "plan_id", "report_id")

_KEEP_OF = "(SELECT m.keep_id FROM _artifact_merge m WHERE m.dup_id = {table}.artifact_id)"
_DUPS = "(SELECT dup_id FROM _artifact_merge)"


def _merge_duplicates() -> None:
    conn = op.get_bind()
    conn.execute(sa.text("CREATE TABLE _artifact_merge (dup_id BIGINT NOT NULL PRIMARY KEY, keep_id BIGINT NOT NULL)"))
    conn.execute(sa.text(f"""
        INSERT INTO _artifact_merge (dup_id, keep_id)
        SELECT a.id, g.keep_id FROM artifact a JOIN ({_GROUPS}) g
          ON a.storage_id = g.storage_id AND a.hash = g.hash AND (a.key = g.key OR (a.key IS NULL AND g.key IS NULL))
        WHERE a.branch_id != -1 AND a.id != g.keep_id
    """))
    if conn.execute(sa.text("SELECT COUNT(*) FROM _artifact_merge")).scalar():
        # The creating run of a kept row registered outside any run: the first duplicate's.
        conn.execute(sa.text("""
            UPDATE artifact SET run_id = (
                SELECT d.run_id FROM _artifact_merge m JOIN artifact d ON d.id = m.dup_id
                WHERE m.keep_id = artifact.id AND d.run_id IS NOT NULL ORDER BY d.id LIMIT 1)
            WHERE run_id IS NULL AND id IN (
                SELECT m.keep_id FROM _artifact_merge m JOIN artifact d ON d.id = m.dup_id WHERE d.run_id IS NOT NULL)
        """))
        for table, other in _LINKS:
            keep = _KEEP_OF.format(table=table)
            # One link per (other, kept row): the oldest link to a duplicate is moved, unless
            # the kept row has that link already; the rest say the same thing and go.
            conn.execute(sa.text(f"""
                UPDATE {table} SET artifact_id = {keep}
                WHERE artifact_id IN {_DUPS}
                  AND NOT EXISTS (SELECT 1 FROM {table} y WHERE y.{other} = {table}.{other} AND y.artifact_id = {keep})
                  AND NOT EXISTS (SELECT 1 FROM {table} y JOIN _artifact_merge my ON my.dup_id = y.artifact_id
                                  WHERE y.{other} = {table}.{other} AND my.keep_id = {keep} AND y.id < {table}.id)
            """))
            conn.execute(sa.text(f"DELETE FROM {table} WHERE artifact_id IN {_DUPS}"))
        # A run that created the kept row did not also recreate it.
        conn.execute(sa.text("""
            DELETE FROM run_recreated_artifact
            WHERE artifact_id IN (SELECT keep_id FROM _artifact_merge)
              AND run_id = (SELECT a.run_id FROM artifact a WHERE a.id = run_recreated_artifact.artifact_id)
        """))
        # Every other run that created a duplicate recreated the kept row.
        conn.execute(sa.text("""
            INSERT INTO run_recreated_artifact (run_id, artifact_id, created_at)
            SELECT d.run_id, m.keep_id, MIN(d.created_at)
            FROM _artifact_merge m JOIN artifact d ON d.id = m.dup_id JOIN artifact k ON k.id = m.keep_id
            WHERE d.run_id IS NOT NULL AND d.run_id != k.run_id
              AND NOT EXISTS (SELECT 1 FROM run_recreated_artifact x WHERE x.run_id = d.run_id AND x.artifact_id = m.keep_id)
            GROUP BY d.run_id, m.keep_id
        """))
        for column in _RUN_COLUMNS:
            conn.execute(sa.text(f"""
                UPDATE run SET {column} = (SELECT m.keep_id FROM _artifact_merge m WHERE m.dup_id = run.{column})
                WHERE {column} IN {_DUPS}
            """))
        conn.execute(sa.text(f"""
            UPDATE artifact SET is_latest = TRUE
            WHERE is_latest = FALSE
              AND id IN (SELECT m.keep_id FROM _artifact_merge m JOIN artifact d ON d.id = m.dup_id WHERE d.is_latest = TRUE)
              AND NOT EXISTS (SELECT 1 FROM artifact o
                              WHERE o.storage_id = artifact.storage_id AND o.key = artifact.key AND o.is_latest = TRUE
                                AND o.branch_id != -1 AND o.id NOT IN {_DUPS})
        """))
        conn.execute(sa.text(f"UPDATE artifact SET branch_id = -1 WHERE id IN {_DUPS}"))
    conn.execute(sa.text("DROP TABLE _artifact_merge"))


def upgrade() -> None:
    _merge_duplicates()
    op.create_index("uq_artifact_storage_key_hash", "artifact", ["storage_id", "key", "hash"], unique=True,
                    sqlite_where=sa.text(_KEYED), postgresql_where=sa.text(_KEYED))
    op.create_index("uq_artifact_storage_hash_nokey", "artifact", ["storage_id", "hash"], unique=True,
                    sqlite_where=sa.text(_UNKEYED), postgresql_where=sa.text(_UNKEYED))


def downgrade() -> None:
    op.drop_index("uq_artifact_storage_hash_nokey", "artifact")
    op.drop_index("uq_artifact_storage_key_hash", "artifact")
