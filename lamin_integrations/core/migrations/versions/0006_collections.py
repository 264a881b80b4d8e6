"""Collections (lamindb's `ln.Collection`: artifacts saved together, versioned by key), the
runs that read or recreate them (`run.input_collections`, `run.recreated_collections`), the
records a run read (`run.input_records`), lamindb's run annotations (`run.artifacts`,
`run.linked_artifacts`, `run.linked_in_records`) and notes attached to runs (`run.ablocks`)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

import lamin_integrations.core.schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('collection',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('uid', sa.String(length=20), nullable=False),
    sa.Column('key', sa.String(length=1024), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('hash', sa.String(length=64), nullable=True),
    sa.Column('reference', sa.String(length=255), nullable=True),
    sa.Column('reference_type', sa.String(length=25), nullable=True),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.Column('is_latest', sa.Boolean(), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('branch_id', sa.SmallInteger(), nullable=False),
    sa.Column('is_locked', sa.Boolean(), nullable=False),
    sa.Column('_aux', lamin_integrations.core.schema.JSONType(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_collection_created_by_id_user')),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_collection_run_id_run'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection')),
    sa.UniqueConstraint('uid', name=op.f('uq_collection_uid'))
    )
    op.create_index(op.f('ix_collection_branch_id'), 'collection', ['branch_id'], unique=False)
    op.create_index(op.f('ix_collection_created_by_id'), 'collection', ['created_by_id'], unique=False)
    op.create_index(op.f('ix_collection_hash'), 'collection', ['hash'], unique=False)
    op.create_index(op.f('ix_collection_key'), 'collection', ['key'], unique=False)
    op.create_index(op.f('ix_collection_run_id'), 'collection', ['run_id'], unique=False)
    op.create_table('run_block',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('uid', sa.String(length=20), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=22), nullable=False),
    sa.Column('hash', sa.String(length=22), nullable=True),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.Column('is_latest', sa.Boolean(), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('branch_id', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_run_block_created_by_id_user')),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_block_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_block')),
    sa.UniqueConstraint('uid', name=op.f('uq_run_block_uid'))
    )
    op.create_index(op.f('ix_run_block_run_id'), 'run_block', ['run_id'], unique=False)
    op.create_table('artifact_run',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('artifact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifact.id'], name=op.f('fk_artifact_run_artifact_id_artifact'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_artifact_run_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifact_run')),
    sa.UniqueConstraint('artifact_id', 'run_id', name=op.f('uq_artifact_run_artifact_id_run_id'))
    )
    op.create_index(op.f('ix_artifact_run_run_id'), 'artifact_run', ['run_id'], unique=False)
    op.create_table('collection_artifact',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('collection_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('artifact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifact.id'], name=op.f('fk_collection_artifact_artifact_id_artifact'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['collection_id'], ['collection.id'], name=op.f('fk_collection_artifact_collection_id_collection'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_artifact')),
    sa.UniqueConstraint('collection_id', 'artifact_id', name=op.f('uq_collection_artifact_collection_id_artifact_id'))
    )
    op.create_index(op.f('ix_collection_artifact_artifact_id'), 'collection_artifact', ['artifact_id'], unique=False)
    op.create_table('record_run',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('record_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['record.id'], name=op.f('fk_record_run_record_id_record'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_record_run_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_record_run')),
    sa.UniqueConstraint('record_id', 'run_id', name=op.f('uq_record_run_record_id_run_id'))
    )
    op.create_index(op.f('ix_record_run_run_id'), 'record_run', ['run_id'], unique=False)
    op.create_table('run_artifact',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('artifact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifact.id'], name=op.f('fk_run_artifact_artifact_id_artifact'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_artifact_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_artifact')),
    sa.UniqueConstraint('run_id', 'artifact_id', name=op.f('uq_run_artifact_run_id_artifact_id'))
    )
    op.create_index(op.f('ix_run_artifact_artifact_id'), 'run_artifact', ['artifact_id'], unique=False)
    op.create_table('run_input_collection',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('collection_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['collection_id'], ['collection.id'], name=op.f('fk_run_input_collection_collection_id_collection'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_input_collection_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_input_collection')),
    sa.UniqueConstraint('run_id', 'collection_id', name=op.f('uq_run_input_collection_run_id_collection_id'))
    )
    op.create_index(op.f('ix_run_input_collection_collection_id'), 'run_input_collection', ['collection_id'], unique=False)
    op.create_table('run_input_record',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('record_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['record.id'], name=op.f('fk_run_input_record_record_id_record'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_input_record_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_input_record')),
    sa.UniqueConstraint('run_id', 'record_id', name=op.f('uq_run_input_record_run_id_record_id'))
    )
    op.create_index(op.f('ix_run_input_record_record_id'), 'run_input_record', ['record_id'], unique=False)
    op.create_table('run_recreated_collection',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('collection_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['collection_id'], ['collection.id'], name=op.f('fk_run_recreated_collection_collection_id_collection'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_recreated_collection_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_recreated_collection')),
    sa.UniqueConstraint('run_id', 'collection_id', name=op.f('uq_run_recreated_collection_run_id_collection_id'))
    )
    op.create_index(op.f('ix_run_recreated_collection_collection_id'), 'run_recreated_collection', ['collection_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_run_recreated_collection_collection_id'), table_name='run_recreated_collection')
    op.drop_table('run_recreated_collection')
    op.drop_index(op.f('ix_run_input_record_record_id'), table_name='run_input_record')
    op.drop_table('run_input_record')
    op.drop_index(op.f('ix_run_input_collection_collection_id'), table_name='run_input_collection')
    op.drop_table('run_input_collection')
    op.drop_index(op.f('ix_run_artifact_artifact_id'), table_name='run_artifact')
    op.drop_table('run_artifact')
    op.drop_index(op.f('ix_record_run_run_id'), table_name='record_run')
    op.drop_table('record_run')
    op.drop_index(op.f('ix_collection_artifact_artifact_id'), table_name='collection_artifact')
    op.drop_table('collection_artifact')
    op.drop_index(op.f('ix_artifact_run_run_id'), table_name='artifact_run')
    op.drop_table('artifact_run')
    op.drop_index(op.f('ix_run_block_run_id'), table_name='run_block')
    op.drop_table('run_block')
    op.drop_index(op.f('ix_collection_run_id'), table_name='collection')
    op.drop_index(op.f('ix_collection_key'), table_name='collection')
    op.drop_index(op.f('ix_collection_hash'), table_name='collection')
    op.drop_index(op.f('ix_collection_created_by_id'), table_name='collection')
    op.drop_index(op.f('ix_collection_branch_id'), table_name='collection')
    op.drop_table('collection')
