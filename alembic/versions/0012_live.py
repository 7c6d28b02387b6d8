"""Live search of big catalogs: the head of largest-norm items read with the hnsw graph.

Revision ID: 0012_live
Revises: 0012_explain
"""

from alembic import op

revision = "0012_live"
down_revision = "0012_explain"
branch_labels = None
depends_on = None


def upgrade() -> None:
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
