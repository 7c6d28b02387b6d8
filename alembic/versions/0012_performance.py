"""Performance: session fold-in and explanations from a basis stored with each version, and
live search of big catalogs with a head of largest-norm items beside the hnsw graph.

- ``recsys.version_basis``: (YᵀY + λI)^-½ as rows, computed at training (and by a fold-in that
  adds items) instead of a YᵀY cached on the first call. Ready versions get theirs here.
- ``model_version.index_head_by_k``: how many largest-norm items ``recsys._top_items`` scores
  exactly beside the graph, per k; versions built before it search with the graph alone.

Revision ID: 0012
Revises: 0011
"""

from alembic import op
from psycopg import sql

from recsys_db import db, gram

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        DROP FUNCTION IF EXISTS recsys._user_system(recsys.model_version, recsys.version_stats,
                                                    integer[], double precision[]);
        DROP FUNCTION IF EXISTS recsys._confidences(recsys.model_version, recsys.version_stats,
                                                    integer[], double precision[]);
        DROP FUNCTION IF EXISTS recsys._version_stats(recsys.model_version);
        DROP FUNCTION IF EXISTS recsys._cholesky(double precision[], integer);
        DROP FUNCTION IF EXISTS recsys._cholesky_solve(double precision[], integer,
                                                       double precision[]);
        DROP TABLE recsys.version_stats;

        """
    )
    conn = op.get_bind().connection.driver_connection
    vector = db.vector_type(conn)
    conn.execute(sql.SQL("""
        CREATE TABLE recsys.version_basis (
            model_id  integer NOT NULL,
            version   integer NOT NULL,
            k         integer NOT NULL,
            items     integer NOT NULL,
            gram      double precision[] NOT NULL,
            w_column  {vector},
            w_row     {vector},
            PRIMARY KEY (model_id, version, k),
            FOREIGN KEY (model_id, version)
                REFERENCES recsys.model_version (model_id, version) ON DELETE CASCADE
        );
        -- inline: each call reads every column, detoasting it once per product otherwise
        ALTER TABLE recsys.version_basis ALTER COLUMN w_column SET STORAGE MAIN,
                                          ALTER COLUMN w_row SET STORAGE MAIN;
        COMMENT ON TABLE recsys.version_basis IS
            'per version, for recommend_for_items and explain, one row per factor k: row k of '
            'YᵀY of its first items items (float64), and column k and row k of a basis W with '
            'W Wᵀ = (YᵀY + λI)⁻¹ (NULL when that matrix is singular); written by training, by '
            'fold-ins that add items, and for earlier versions by revision 0012';
    """).format(vector=vector))
    gram.backfill(conn)
    op.execute(
        """
        ALTER TABLE recsys.model_version ADD COLUMN index_head_by_k integer[];
        COMMENT ON COLUMN recsys.model_version.index_head_by_k IS
            'hnsw only: for k up to 10, 20, 50 and 100, how many of the largest-norm unseen '
            'items recsys._top_items scores exactly besides the graph''s top k (the smallest '
            'that reached the recall target at that k); null (and versions built before '
            '0012): the graph alone';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE recsys.model_version DROP COLUMN index_head_by_k;
        DROP TABLE recsys.version_basis;
        CREATE TABLE recsys.version_stats (
            model_id     integer NOT NULL,
            version      integer NOT NULL,
            items        integer NOT NULL,
            gram         double precision[] NOT NULL,
            item_weight  double precision[],
            computed_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (model_id, version),
            FOREIGN KEY (model_id, version)
                REFERENCES recsys.model_version (model_id, version) ON DELETE CASCADE
        );
        """
    )
