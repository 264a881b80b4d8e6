"""Labels and feature values on artifacts: lamindb's ULabel registry, links from runs and
artifacts to ULabels and Records (`run.ulabels`, `artifact.records`), and feature values on
artifacts (`artifact.features`, `Artifact.filter(<feature>=...)`)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import lamin_integrations.core.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ulabel',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('uid', sa.String(length=8), nullable=False),
    sa.Column('name', sa.String(length=150), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('is_type', sa.Boolean(), nullable=False),
    sa.Column('type_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reference', sa.String(length=255), nullable=True),
    sa.Column('reference_type', sa.String(length=25), nullable=True),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('branch_id', sa.SmallInteger(), nullable=False),
    sa.Column('is_locked', sa.Boolean(), nullable=False),
    sa.Column('_aux', lamin_integrations.core.schema.JSONType(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_ulabel_created_by_id_user')),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_ulabel_run_id_run'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['type_id'], ['ulabel.id'], name=op.f('fk_ulabel_type_id_ulabel')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ulabel')),
    sa.UniqueConstraint('uid', name=op.f('uq_ulabel_uid'))
    )
    op.create_index(op.f('ix_ulabel_branch_id'), 'ulabel', ['branch_id'], unique=False)
    op.create_index(op.f('ix_ulabel_created_by_id'), 'ulabel', ['created_by_id'], unique=False)
    op.create_index(op.f('ix_ulabel_name'), 'ulabel', ['name'], unique=False)
    op.create_index(op.f('ix_ulabel_run_id'), 'ulabel', ['run_id'], unique=False)
    op.create_index(op.f('ix_ulabel_type_id'), 'ulabel', ['type_id'], unique=False)
    op.create_table('artifact_json_value',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('artifact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('json_value_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifact.id'], name=op.f('fk_artifact_json_value_artifact_id_artifact'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['json_value_id'], ['json_value.id'], name=op.f('fk_artifact_json_value_json_value_id_json_value'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifact_json_value')),
    sa.UniqueConstraint('artifact_id', 'json_value_id', name=op.f('uq_artifact_json_value_artifact_id_json_value_id'))
    )
    op.create_index(op.f('ix_artifact_json_value_json_value_id'), 'artifact_json_value', ['json_value_id'], unique=False)
    op.create_table('artifact_record',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('artifact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('record_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifact.id'], name=op.f('fk_artifact_record_artifact_id_artifact'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['record_id'], ['record.id'], name=op.f('fk_artifact_record_record_id_record'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifact_record')),
    sa.UniqueConstraint('artifact_id', 'record_id', name=op.f('uq_artifact_record_artifact_id_record_id'))
    )
    op.create_index(op.f('ix_artifact_record_record_id'), 'artifact_record', ['record_id'], unique=False)
    op.create_table('artifact_ulabel',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('artifact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('ulabel_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifact.id'], name=op.f('fk_artifact_ulabel_artifact_id_artifact'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ulabel_id'], ['ulabel.id'], name=op.f('fk_artifact_ulabel_ulabel_id_ulabel'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifact_ulabel')),
    sa.UniqueConstraint('artifact_id', 'ulabel_id', name=op.f('uq_artifact_ulabel_artifact_id_ulabel_id'))
    )
    op.create_index(op.f('ix_artifact_ulabel_ulabel_id'), 'artifact_ulabel', ['ulabel_id'], unique=False)
    op.create_table('run_record',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('record_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['record.id'], name=op.f('fk_run_record_record_id_record'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_record_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_record')),
    sa.UniqueConstraint('run_id', 'record_id', name=op.f('uq_run_record_run_id_record_id'))
    )
    op.create_index(op.f('ix_run_record_record_id'), 'run_record', ['record_id'], unique=False)
    op.create_table('run_ulabel',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('ulabel_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', lamin_integrations.core.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_ulabel_run_id_run'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ulabel_id'], ['ulabel.id'], name=op.f('fk_run_ulabel_ulabel_id_ulabel'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_ulabel')),
    sa.UniqueConstraint('run_id', 'ulabel_id', name=op.f('uq_run_ulabel_run_id_ulabel_id'))
    )
    op.create_index(op.f('ix_run_ulabel_ulabel_id'), 'run_ulabel', ['ulabel_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_run_ulabel_ulabel_id'), table_name='run_ulabel')
    op.drop_table('run_ulabel')
    op.drop_index(op.f('ix_run_record_record_id'), table_name='run_record')
    op.drop_table('run_record')
    op.drop_index(op.f('ix_artifact_ulabel_ulabel_id'), table_name='artifact_ulabel')
    op.drop_table('artifact_ulabel')
    op.drop_index(op.f('ix_artifact_record_record_id'), table_name='artifact_record')
    op.drop_table('artifact_record')
    op.drop_index(op.f('ix_artifact_json_value_json_value_id'), table_name='artifact_json_value')
    op.drop_table('artifact_json_value')
    op.drop_index(op.f('ix_ulabel_type_id'), table_name='ulabel')
    op.drop_index(op.f('ix_ulabel_run_id'), table_name='ulabel')
    op.drop_index(op.f('ix_ulabel_name'), table_name='ulabel')
    op.drop_index(op.f('ix_ulabel_created_by_id'), table_name='ulabel')
    op.drop_index(op.f('ix_ulabel_branch_id'), table_name='ulabel')
    op.drop_table('ulabel')
