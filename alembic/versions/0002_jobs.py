"""Job queue, workers and leases.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE recsys.worker (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name         text NOT NULL,
            lease        interval NOT NULL CHECK (lease > interval '0'),
            state        text NOT NULL DEFAULT 'idle'
                         CHECK (state IN ('idle', 'busy', 'stopping', 'stopped', 'dead')),
            started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
            heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            stopped_at   timestamptz
        );

        -- One queued and at most one running job per model: requests for a model that is
        -- already queued fold into the queued job.
        CREATE TABLE recsys.job (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            model_id    integer NOT NULL REFERENCES recsys.model (id) ON DELETE CASCADE,
            mode        text NOT NULL DEFAULT 'full' CHECK (mode IN ('full', 'incremental')),
            reason      text NOT NULL CHECK (reason IN ('requested', 'scheduled', 'new events')),
            status      text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
            attempts    integer NOT NULL DEFAULT 0,
            run_after   timestamptz NOT NULL DEFAULT clock_timestamp(),
            worker_id   bigint REFERENCES recsys.worker (id) ON DELETE SET NULL,
            worker      text,
            lease_until timestamptz,
            run_id      bigint REFERENCES recsys.run (id) ON DELETE SET NULL,
            created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            started_at  timestamptz,
            finished_at timestamptz,
            error       text
        );
        CREATE UNIQUE INDEX job_queued_model_idx ON recsys.job (model_id) WHERE status = 'queued';
        CREATE UNIQUE INDEX job_running_model_idx ON recsys.job (model_id)
            WHERE status = 'running';
        CREATE INDEX job_claim_idx ON recsys.job (run_after, id) WHERE status = 'queued';
        CREATE INDEX job_model_finished_idx ON recsys.job (model_id, finished_at DESC);

        -- Newest source time a version has taken into account (the time column's value as
        -- text); incremental fold-in reads the rows after it.
        CREATE TABLE recsys.watermark (
            model_id integer NOT NULL,
            version  integer NOT NULL,
            value    text NOT NULL,
            PRIMARY KEY (model_id, version),
            FOREIGN KEY (model_id, version)
                REFERENCES recsys.model_version (model_id, version) ON DELETE CASCADE
        );
        """
    )
