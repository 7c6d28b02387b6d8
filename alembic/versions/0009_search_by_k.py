"""Live search tuned per k, and precomputed similar items served by similar_items.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE recsys.model_version
            ADD COLUMN index_ef_by_k integer[],
            ADD COLUMN index_recall_by_k double precision[],
            ADD COLUMN similar_k integer NOT NULL DEFAULT 0;
        COMMENT ON COLUMN recsys.model_version.index_ef_by_k IS
            'hnsw only: the ef_search used for k up to 10, 20, 50 and 100 (the smallest that '
            'reached the recall target at that k); null entries, k above 100 and versions built '
            'before 0009 (beyond k 10) search exactly';
        COMMENT ON COLUMN recsys.model_version.index_recall_by_k IS
            'recall at k = 10, 20, 50, 100 of the served search against exact search, measured '
            'at build time (1 where that k searches exactly)';
        COMMENT ON COLUMN recsys.model_version.similar_k IS
            'rows per item in the version''s precomputed similar-items partition, which '
            'similar_items serves for k up to it (0: it always searches)';
        """
    )
