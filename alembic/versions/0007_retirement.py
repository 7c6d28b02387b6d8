"""When a version stopped being active, so that retention drops it only once no transaction
can still be reading it.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE recsys.model_version ADD COLUMN retired_at timestamptz;
        COMMENT ON COLUMN recsys.model_version.retired_at IS
            'when the version last stopped being the active one (null: active or never was)';
        """
    )
