"""The worker's schedule notices keys new in feature relations: job reason 'new content'.

An incremental refresh queued by the worker because a model's feature relations gained keys
with content since its active version was trained (``jobs.enqueue_new_content``) says so in
``recsys.job.reason``.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE recsys.job DROP CONSTRAINT job_reason_check;
        ALTER TABLE recsys.job ADD CONSTRAINT job_reason_check
            CHECK (reason IN ('requested', 'scheduled', 'new events', 'new content'));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        UPDATE recsys.job SET reason = 'new events' WHERE reason = 'new content';
        ALTER TABLE recsys.job DROP CONSTRAINT job_reason_check;
        ALTER TABLE recsys.job ADD CONSTRAINT job_reason_check
            CHECK (reason IN ('requested', 'scheduled', 'new events'));
        """
    )
