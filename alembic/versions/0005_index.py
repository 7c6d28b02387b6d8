"""Per-version index strategy and its measured recall.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE recsys.model_version
            ADD COLUMN index_kind      text CHECK (index_kind IN ('exact', 'hnsw')),
            ADD COLUMN index_ef_search integer CHECK (index_ef_search BETWEEN 1 AND 1000),
            ADD COLUMN index_recall    double precision CHECK (index_recall BETWEEN 0 AND 1),
            ADD CONSTRAINT model_version_hnsw_complete
                CHECK (index_kind IS DISTINCT FROM 'hnsw' OR index_ef_search IS NOT NULL);
        COMMENT ON COLUMN recsys.model_version.index_kind IS
            'how recommend searches the items: exact scan or hnsw (null: exact, built before 0005)';
        COMMENT ON COLUMN recsys.model_version.index_ef_search IS
            'hnsw only: the ef_search recommend uses, the smallest that reached the recall target';
        COMMENT ON COLUMN recsys.model_version.index_recall IS
            'recall@10 of the served search against exact search, measured at build time';
        """
    )
