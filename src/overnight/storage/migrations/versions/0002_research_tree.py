"""The research tree: each experiment's operator and the node experiment it was branched from."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # old rows keep NULL: the dashboard finds their node through parent_commit
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("operator", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("parent_id")
        batch.drop_column("operator")
