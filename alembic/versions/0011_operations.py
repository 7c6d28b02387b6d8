"""Operations over months: how often each worker reconnected after a database restart and the
error that cut it off (shown in recsys.workers), and a record of every change to a model
(recsys.alter_model, tune --apply), shown in recsys.model_changes.

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

        ALTER TABLE recsys.job ADD COLUMN abandoned integer NOT NULL DEFAULT 0;
        COMMENT ON COLUMN recsys.job.abandoned IS
            'times a dead worker left this job running (retried without using up an attempt '
            'up to max attempts, then counted: a job that kills its worker is not retried '
            'for ever)';

        CREATE TABLE recsys.model_change (
            id          bigserial PRIMARY KEY,
            model_id    integer NOT NULL REFERENCES recsys.model (id) ON DELETE CASCADE,
            changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            changed_by  text NOT NULL,
            changes     jsonb NOT NULL
        );
        CREATE INDEX ON recsys.model_change (model_id, id);
        COMMENT ON TABLE recsys.model_change IS
            'what changed in a model after create_model, by whom and when: '
            '{"setting": {"from": old, "to": new}}';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE recsys.model_change;
        ALTER TABLE recsys.job DROP COLUMN abandoned;
        ALTER TABLE recsys.worker
            DROP COLUMN reconnects, DROP COLUMN last_error, DROP COLUMN last_error_at;
        """
    )
