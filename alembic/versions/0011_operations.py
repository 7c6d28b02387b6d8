"""Workers that ride out database restarts: how often each reconnected and the error that cut
it off, shown in recsys.workers.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE recsys.worker
            ADD COLUMN reconnects integer NOT NULL DEFAULT 0,
            ADD COLUMN last_error text,
            ADD COLUMN last_error_at timestamptz;
        COMMENT ON COLUMN recsys.worker.reconnects IS
            'times the worker lost its database connection and reconnected';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE recsys.worker
            DROP COLUMN reconnects, DROP COLUMN last_error, DROP COLUMN last_error_at;
        """
    )
