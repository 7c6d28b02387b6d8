"""Evaluation metrics, tuning results and precomputed recommendations.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- A run the promotion gate kept from activation ends 'rejected', not 'failed':
        -- nothing broke, and retrying the same configuration would not change the verdict.
        ALTER TABLE recsys.run DROP CONSTRAINT run_status_check;
        ALTER TABLE recsys.run ADD CONSTRAINT run_status_check
            CHECK (status IN ('running', 'succeeded', 'failed', 'rejected'));

        -- recsys.als gains evaluation, gate and precompute arguments (sql/001-params.sql).
        DROP FUNCTION IF EXISTS recsys.als(integer, double precision, double precision, integer,
                                           text, double precision, double precision, integer,
                                           integer, text);

        CREATE TABLE recsys.tuning (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            model_id     integer NOT NULL REFERENCES recsys.model (id) ON DELETE CASCADE,
            metric       text NOT NULL,
            k            integer NOT NULL,
            grid         jsonb NOT NULL,
            started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
            finished_at  timestamptz,
            best_run_id  bigint,
            best_params  jsonb,
            applied      boolean NOT NULL DEFAULT false
        );

        -- Trials of a tuning are runs of kind 'tune' (no version), so their metrics share
        -- recsys.metric with the holdout evaluation of full runs.
        ALTER TABLE recsys.run
            ADD COLUMN tuning_id bigint REFERENCES recsys.tuning (id) ON DELETE CASCADE;

        CREATE TABLE recsys.evaluation (
            run_id            bigint PRIMARY KEY REFERENCES recsys.run (id) ON DELETE CASCADE,
            split             text NOT NULL CHECK (split IN ('random', 'time')),
            k                 integer NOT NULL,
            test_users        integer NOT NULL,
            test_interactions bigint NOT NULL,
            train_interactions bigint NOT NULL,
            gate              text,
            gate_passed       boolean
        );

        CREATE TABLE recsys.metric (
            run_id      bigint NOT NULL REFERENCES recsys.run (id) ON DELETE CASCADE,
            recommender text NOT NULL CHECK (recommender IN ('als', 'popular')),
            metric      text NOT NULL,
            value       double precision NOT NULL,
            PRIMARY KEY (run_id, recommender, metric)
        );

        -- Precomputed rows, one partition per (model, version): a version's partition is
        -- attached once written and dropped with the version; readers go through views that
        -- pick the active version.
        CREATE TABLE recsys.recommendation (
            model_id integer NOT NULL,
            version  integer NOT NULL,
            user_key text NOT NULL,
            rank     integer NOT NULL,
            item_key text NOT NULL,
            score    real NOT NULL
        ) PARTITION BY RANGE (model_id, version);

        CREATE TABLE recsys.similar_item (
            model_id integer NOT NULL,
            version  integer NOT NULL,
            item_key text NOT NULL,
            rank     integer NOT NULL,
            similar_item_key text NOT NULL,
            score    real NOT NULL
        ) PARTITION BY RANGE (model_id, version);
        """
    )
