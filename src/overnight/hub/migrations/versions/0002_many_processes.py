"""Many hub processes: token revocation, lease attempts, one chain entry per submission."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hub_accounts") as b:
        b.add_column(sa.Column("revoked", sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("token_changed_at", sa.Float(), nullable=True))
        b.create_index("ix_hub_accounts_token_changed_at", ["token_changed_at"])
    with op.batch_alter_table("hub_submissions") as b:
        b.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("hub_chain") as b:
        b.create_unique_constraint("uq_chain_submission", ["submission_id"])
    state = op.create_table("hub_state", sa.Column("id", sa.Integer(), nullable=False),
                            sa.Column("version", sa.Integer(), nullable=False), sa.PrimaryKeyConstraint("id"))
    op.bulk_insert(state, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("hub_state")
    with op.batch_alter_table("hub_chain") as b:
        b.drop_constraint("uq_chain_submission", type_="unique")
    with op.batch_alter_table("hub_submissions") as b:
        b.drop_column("attempts")
    with op.batch_alter_table("hub_accounts") as b:
        b.drop_index("ix_hub_accounts_token_changed_at")
        b.drop_column("token_changed_at")
        b.drop_column("revoked")
