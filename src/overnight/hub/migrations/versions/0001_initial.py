"""The initial hub schema: accounts, tracks, chain, submissions."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('streak', sa.Integer(), nullable=False),
    sa.Column('verified', sa.Integer(), nullable=False),
    sa.Column('false_claims', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('hub_tracks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('spec', sa.Text(), nullable=False),
    sa.Column('program', sa.Text(), nullable=False),
    sa.Column('head', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('hub_chain',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('commit', sa.String(length=64), nullable=False),
    sa.Column('parent', sa.String(length=64), nullable=True),
    sa.Column('submission_id', sa.Integer(), nullable=True),
    sa.Column('contributor_id', sa.Integer(), nullable=True),
    sa.Column('verifier_id', sa.Integer(), nullable=True),
    sa.Column('metric', sa.Float(), nullable=True),
    sa.Column('head_metric', sa.Float(), nullable=True),
    sa.Column('gain', sa.Float(), nullable=False),
    sa.Column('tier', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['track_id'], ['hub_tracks.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('track_id', 'seq', name='uq_chain_seq')
    )
    op.create_index(op.f('ix_hub_chain_track_id'), 'hub_chain', ['track_id'], unique=False)
    op.create_table('hub_submissions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=False),
    sa.Column('contributor_id', sa.Integer(), nullable=False),
    sa.Column('idem_key', sa.String(length=100), nullable=False),
    sa.Column('parent', sa.String(length=64), nullable=False),
    sa.Column('patch', sa.Text(), nullable=False),
    sa.Column('patch_sha', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('claimed_metric', sa.Float(), nullable=False),
    sa.Column('claimed_head', sa.Float(), nullable=True),
    sa.Column('claimed_gain', sa.Float(), nullable=False),
    sa.Column('claimed_runs', sa.JSON(), nullable=False),
    sa.Column('platform', sa.JSON(), nullable=False),
    sa.Column('tier', sa.String(length=200), nullable=False),
    sa.Column('log_tail', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('priority', sa.Float(), nullable=False),
    sa.Column('verifier_id', sa.Integer(), nullable=True),
    sa.Column('lease_until', sa.Float(), nullable=True),
    sa.Column('verified_metric', sa.Float(), nullable=True),
    sa.Column('verification', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('decided_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['contributor_id'], ['hub_accounts.id'], ),
    sa.ForeignKeyConstraint(['track_id'], ['hub_tracks.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('contributor_id', 'idem_key', name='uq_sub_idem'),
    sa.UniqueConstraint('track_id', 'parent', 'patch_sha', name='uq_sub_patch')
    )
    op.create_index(op.f('ix_hub_submissions_contributor_id'), 'hub_submissions', ['contributor_id'], unique=False)
    op.create_index(op.f('ix_hub_submissions_track_id'), 'hub_submissions', ['track_id'], unique=False)
    op.create_index('ix_sub_queue', 'hub_submissions', ['status', 'priority'], unique=False)


def downgrade() -> None:
    for table in ("hub_submissions", "hub_chain", "hub_tracks", "hub_accounts"):
        op.drop_table(table)
