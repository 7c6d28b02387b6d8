"""Content: text and vector features, their embeddings, and the feature map kept per version.

- ``recsys.model_feature.regularization`` may be NULL: chosen at each training by
  cross-validation. ``recsys.model_feature`` also takes ``text_columns`` (embedded by the
  worker with ``embedding_model``) and a ``vector_column`` of ``vector_dims`` dimensions besides the
  categorical ``feature_columns``, which may now be empty.
- ``recsys.embedding``: text embeddings by embedding model and SHA-256 of the text, so a text
  is embedded once, whatever model or version reads it.
- ``recsys.feature_map``: the ridge map from content to factors each training fitted, per
  version and kind, so that an incremental refresh maps new items and users without a
  retrain.
- ``model_version.content_items``: how many of its items are ``from_content``.
- ``recsys.item_content``: per version, each item's content mapped into the factor space (the
  content side of ``similar_items(..., content_weight)``), deleted with the version's tables.
- Every version's factor tables gain ``from_content``: the row's vector was mapped from
  content, not trained. In older versions those are the rows their training appended after
  the trained ones (as many as its run counted cold).

Revision ID: 0014
Revises: 0013
"""

from alembic import op
from psycopg import sql

from recsys_db import db

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind().connection.driver_connection
    vector = db.vector_type(conn)
    conn.execute(sql.SQL("""
        DROP FUNCTION IF EXISTS recsys.set_features(text, text, regclass, text, text[],
                                                    double precision);
        ALTER TABLE recsys.model_feature
            ALTER COLUMN regularization DROP NOT NULL,
            ALTER COLUMN regularization DROP DEFAULT,
            DROP CONSTRAINT IF EXISTS model_feature_feature_columns_check,
            ADD COLUMN text_columns text[] NOT NULL DEFAULT '{{}}',
            ADD COLUMN vector_column text,
            ADD COLUMN vector_dims integer CHECK (vector_dims BETWEEN 1 AND 16000),
            ADD COLUMN embedding_model text,
            ADD CONSTRAINT model_feature_columns_check CHECK (
                cardinality(feature_columns) + cardinality(text_columns) > 0
                OR vector_column IS NOT NULL),
            ADD CONSTRAINT model_feature_text_check CHECK (
                (cardinality(text_columns) = 0) = (embedding_model IS NULL)),
            ADD CONSTRAINT model_feature_vector_check CHECK (
                (vector_column IS NULL) = (vector_dims IS NULL));

        ALTER TABLE recsys.model_version
            ADD COLUMN content_items integer NOT NULL DEFAULT 0 CHECK (content_items >= 0);
        COMMENT ON COLUMN recsys.model_version.content_items IS
            'how many of the version''s items were mapped from content (from_content): live '
            'searches look up the mark only where there are some';
        UPDATE recsys.model_version v SET content_items = r.cold_items
          FROM recsys.run r WHERE r.id = v.run_id AND r.cold_items > 0;

        CREATE TABLE recsys.embedding (
            embedding_model text NOT NULL,
            text_sha256     bytea NOT NULL,
            embedding       {vector} NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (embedding_model, text_sha256)
        );
        COMMENT ON TABLE recsys.embedding IS
            'text embeddings by model and SHA-256 of the text: each text is embedded once';

        CREATE TABLE recsys.feature_map (
            model_id   integer NOT NULL,
            version    integer NOT NULL,
            kind       text NOT NULL CHECK (kind IN ('item', 'user')),
            definition jsonb NOT NULL,
            tokens     text[] NOT NULL,
            text_dims  integer NOT NULL,
            weights    bytea NOT NULL,
            regularization double precision NOT NULL,
            max_norm   double precision NOT NULL,
            PRIMARY KEY (model_id, version, kind),
            FOREIGN KEY (model_id, version)
                REFERENCES recsys.model_version (model_id, version) ON DELETE CASCADE
        );
        CREATE TABLE recsys.item_content (
            model_id integer NOT NULL,
            version  integer NOT NULL,
            idx      integer NOT NULL,
            content  {vector} NOT NULL,
            PRIMARY KEY (model_id, version, idx),
            FOREIGN KEY (model_id, version)
                REFERENCES recsys.model_version (model_id, version) ON DELETE CASCADE
        );
        COMMENT ON TABLE recsys.item_content IS
            'per version: each item''s content (categories, text, vector) mapped into the '
            'factor space by the version''s feature map';
        COMMENT ON TABLE recsys.feature_map IS
            'per version and kind: the ridge map from content (categorical tokens, text '
            'embedding, vector) to factors that the training fitted, as float64 rows';
        """).format(vector=vector))
    # a training appended its cold rows right after the rows it trained: indices from the
    # run's users (items) on, as many as it counted cold
    versions = conn.execute(
        "SELECT v.user_table, v.item_table, r.users, coalesce(r.cold_users, 0), r.items,"
        "       coalesce(r.cold_items, 0)"
        "  FROM recsys.model_version v LEFT JOIN recsys.run r ON r.id = v.run_id"
        " WHERE to_regclass(format('recsys.%I', v.item_table)) IS NOT NULL"
        "   AND to_regclass(format('recsys.%I', v.user_table)) IS NOT NULL").fetchall()
    for users, items, trained_users, cold_users, trained_items, cold_items in versions:
        for table, trained, cold in ((users, trained_users, cold_users),
                                     (items, trained_items, cold_items)):
            conn.execute(sql.SQL(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS from_content boolean NOT NULL"
                " DEFAULT false").format(sql.Identifier("recsys", table)))
            if cold and trained is not None:
                conn.execute(sql.SQL("UPDATE {} SET from_content = true"
                                     " WHERE idx >= %s AND idx < %s")
                             .format(sql.Identifier("recsys", table)), (trained, trained + cold))


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE recsys.item_content;
        DROP TABLE recsys.feature_map;
        ALTER TABLE recsys.model_version DROP COLUMN content_items;
        DROP TABLE recsys.embedding;
        DROP FUNCTION IF EXISTS recsys.set_features(text, text, regclass, text, text[],
                                                    double precision, text[], text, integer,
                                                    text);
        DROP FUNCTION IF EXISTS recsys.similar_items(text, text, integer, double precision);
        DROP VIEW IF EXISTS recsys.features;
        DELETE FROM recsys.model_feature WHERE cardinality(feature_columns) = 0;
        UPDATE recsys.model_feature SET regularization = 1.0 WHERE regularization IS NULL;
        ALTER TABLE recsys.model_feature
            DROP CONSTRAINT model_feature_columns_check,
            DROP CONSTRAINT model_feature_text_check,
            DROP CONSTRAINT model_feature_vector_check,
            DROP COLUMN text_columns, DROP COLUMN vector_column, DROP COLUMN vector_dims,
            DROP COLUMN embedding_model,
            ADD CONSTRAINT model_feature_feature_columns_check
                CHECK (cardinality(feature_columns) > 0),
            ALTER COLUMN regularization SET NOT NULL,
            ALTER COLUMN regularization SET DEFAULT 1.0;
        """
    )
