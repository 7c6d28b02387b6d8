"""Model registry, versions and runs.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE recsys.model (
            id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name           text NOT NULL UNIQUE
                           CHECK (name <> '' AND length(name) <= 200 AND name !~ '[[:cntrl:]]'),
            source_schema  text NOT NULL,
            source_table   text NOT NULL,
            user_column    text NOT NULL,
            item_column    text NOT NULL,
            weight_column  text,
            event_column   text,
            event_weights  jsonb,
            time_column    text,
            params         jsonb NOT NULL,
            refresh_every  interval,
            active_version integer,
            created_at     timestamptz NOT NULL DEFAULT now(),
            updated_at     timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE recsys.run (
            id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            model_id           integer NOT NULL REFERENCES recsys.model (id) ON DELETE CASCADE,
            version            integer,
            kind               text NOT NULL DEFAULT 'full',
            status             text NOT NULL DEFAULT 'running'
                               CHECK (status IN ('running', 'succeeded', 'failed')),
            started_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
            finished_at        timestamptz,
            worker             text,
            params             jsonb,
            rows_read          bigint,
            rows_skipped_null  bigint,
            rows_skipped_event bigint,
            users              integer,
            items              integer,
            nnz                bigint,
            stages             jsonb NOT NULL DEFAULT '{}',
            error              text
        );
        CREATE INDEX run_model_started_idx ON recsys.run (model_id, started_at DESC);

        CREATE TABLE recsys.model_version (
            model_id    integer NOT NULL REFERENCES recsys.model (id) ON DELETE CASCADE,
            version     integer NOT NULL,
            run_id      bigint REFERENCES recsys.run (id) ON DELETE SET NULL,
            status      text NOT NULL DEFAULT 'building'
                        CHECK (status IN ('building', 'ready', 'failed', 'dropped')),
            factors     integer NOT NULL,
            users       integer,
            items       integer,
            nnz         bigint,
            user_table  text NOT NULL,
            item_table  text NOT NULL,
            params      jsonb NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (model_id, version)
        );

        ALTER TABLE recsys.model
            ADD FOREIGN KEY (id, active_version)
            REFERENCES recsys.model_version (model_id, version) DEFERRABLE INITIALLY DEFERRED;

        CREATE TABLE recsys.meta (
            key   text PRIMARY KEY,
            value text NOT NULL
        );
        """
    )
