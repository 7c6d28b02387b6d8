"""Item and user features for cold start.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE recsys.model_feature (
            model_id        integer NOT NULL REFERENCES recsys.model (id) ON DELETE CASCADE,
            kind            text NOT NULL CHECK (kind IN ('item', 'user')),
            source_schema   text NOT NULL,
            source_table    text NOT NULL,
            key_column      text NOT NULL,
            feature_columns text[] NOT NULL CHECK (cardinality(feature_columns) > 0),
            regularization  double precision NOT NULL DEFAULT 1.0 CHECK (regularization > 0),
            PRIMARY KEY (model_id, kind)
        );
        ALTER TABLE recsys.run ADD COLUMN cold_items integer, ADD COLUMN cold_users integer;
        """
    )
