"""Ranker: a learned second stage over each model's candidates, stored per version.

- ``recsys.ranker``: a model's ranker declaration (``recsys.create_ranker``).
- ``recsys.ranker_version``: what the training of each version made of it: the LightGBM model
  as text, its features and their importances, its holdout verdict.
- ``recsys.ranked_recommendation``: each version's ranked top-N per user, with the feature
  values each row was ranked on, partitioned per version like ``recsys.recommendation``.
- ``model_version.ranked_k``: how many ranked rows per user the version serves (0: none).
- ``recsys.metric`` takes the ranker's holdout rows: 'ranked', and ALS alone and the
  popularity baseline on the same time window ('ranker_als', 'ranker_popular').

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE recsys.ranker (
            model_id               integer PRIMARY KEY
                                   REFERENCES recsys.model (id) ON DELETE CASCADE,
            label_window           interval NOT NULL CHECK (label_window > interval '0'),
            training_windows       integer NOT NULL CHECK (training_windows BETWEEN 1 AND 10),
            als_candidates         integer NOT NULL CHECK (als_candidates BETWEEN 1 AND 1000),
            popular_candidates     integer NOT NULL CHECK (popular_candidates BETWEEN 0 AND 1000),
            neighbour_candidates   integer NOT NULL
                                   CHECK (neighbour_candidates BETWEEN 0 AND 1000),
            content_candidates     integer NOT NULL CHECK (content_candidates BETWEEN 0 AND 1000),
            recent_items           integer NOT NULL CHECK (recent_items BETWEEN 1 AND 100),
            negatives_per_positive integer NOT NULL
                                   CHECK (negatives_per_positive BETWEEN 0 AND 1000),
            min_positives          integer NOT NULL CHECK (min_positives BETWEEN 1 AND 1000000),
            top_k                  integer NOT NULL CHECK (top_k BETWEEN 1 AND 1000),
            user_features_schema   text,
            user_features_table    text,
            user_key_column        text,
            user_feature_columns   text[],
            item_features_schema   text,
            item_features_table    text,
            item_key_column        text,
            item_feature_columns   text[],
            created_at             timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE recsys.ranker IS
            'a model''s learned ranker over its candidates (recsys.create_ranker); trained '
            'with every full training of the model';

        CREATE TABLE recsys.ranker_version (
            model_id      integer NOT NULL,
            version       integer NOT NULL,
            run_id        bigint NOT NULL REFERENCES recsys.run (id) ON DELETE CASCADE,
            status        text NOT NULL CHECK (status IN ('active', 'rejected', 'failed')),
            reason        text,
            booster       text,
            features      text[],
            gain          double precision[],
            splits        integer[],
            ranked_k      integer NOT NULL DEFAULT 0 CHECK (ranked_k >= 0),
            train_pairs   integer,
            train_positives integer,
            definition    jsonb NOT NULL,
            seconds       double precision,
            PRIMARY KEY (model_id, version),
            FOREIGN KEY (model_id, version)
                REFERENCES recsys.model_version (model_id, version) ON DELETE CASCADE
        );
        COMMENT ON TABLE recsys.ranker_version IS
            'the ranker a training made for a version: LightGBM model text, features with '
            'their importances, and whether it serves (active) or why not (rejected, failed)';

        CREATE TABLE recsys.ranked_recommendation (
            model_id integer NOT NULL,
            version  integer NOT NULL,
            user_key text NOT NULL,
            rank     integer NOT NULL,
            item_key text NOT NULL,
            score    real NOT NULL,
            features real[] NOT NULL
        ) PARTITION BY RANGE (model_id, version);

        ALTER TABLE recsys.model_version
            ADD COLUMN ranked_k integer NOT NULL DEFAULT 0 CHECK (ranked_k >= 0);
        COMMENT ON COLUMN recsys.model_version.ranked_k IS
            'recsys.recommend serves up to this many ranked rows per user from '
            'recsys.ranked_recommendation (0: the version has no active ranker)';

        ALTER TABLE recsys.metric DROP CONSTRAINT metric_recommender_check;
        ALTER TABLE recsys.metric ADD CONSTRAINT metric_recommender_check
            CHECK (recommender IN ('als', 'popular', 'ranked', 'ranker_als', 'ranker_popular'));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DELETE FROM recsys.metric WHERE recommender NOT IN ('als', 'popular');
        ALTER TABLE recsys.metric DROP CONSTRAINT metric_recommender_check;
        ALTER TABLE recsys.metric ADD CONSTRAINT metric_recommender_check
            CHECK (recommender IN ('als', 'popular'));
        ALTER TABLE recsys.model_version DROP COLUMN ranked_k;
        DROP TABLE recsys.ranked_recommendation;
        DROP TABLE recsys.ranker_version;
        DROP TABLE recsys.ranker;
        """
    )
