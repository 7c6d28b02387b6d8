"""How many precomputed recommendations per user a version can serve from its partition.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE recsys.model_version
            ADD COLUMN precomputed_k integer NOT NULL DEFAULT 0;
        COMMENT ON COLUMN recsys.model_version.precomputed_k IS
            'rows per user in the version''s precomputed partition that equal a live search '
            '(0: recommend always searches; a fold-in that adds items resets it)';
        """
    )
