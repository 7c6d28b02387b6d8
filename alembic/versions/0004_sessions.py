"""Session recommendations and explanations: a per-version cache of YᵀY and item totals.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
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
        COMMENT ON TABLE recsys.version_stats IS
            'lazily computed per-version statistics for fold-in: YᵀY of the item factors '
            '(row-major, factors x factors) and, for bm25 models, summed source weight per item '
            'index; recomputed when the item table''s row count differs from items';
        """
    )
