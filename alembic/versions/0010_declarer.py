"""Least privilege: the role that declared each model, derived factor-table names, and item
weights kept with a version (so that nothing reads a source with the owner's rights).

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE recsys.model ADD COLUMN declarer regrole;
        -- models declared before 0010: the source's owner, the role that surely may read it
        -- (recsys.create_model runs with its caller's rights: the default is that caller)
        UPDATE recsys.model m
           SET declarer = c.relowner::regrole
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = m.source_schema AND c.relname = m.source_table;
        ALTER TABLE recsys.model
            ALTER COLUMN declarer SET DEFAULT to_regrole(quote_ident(current_user));
        COMMENT ON COLUMN recsys.model.declarer IS
            'the role that declared the model: sources are checked and read with its rights';

        ALTER TABLE recsys.model_version
            ADD CONSTRAINT model_version_derived_tables CHECK (
                user_table = 'm' || model_id::text || '_v' || version::text || '_users'
                AND item_table = 'm' || model_id::text || '_v' || version::text || '_items');

        CREATE TABLE recsys.version_item_weight (
            model_id    integer NOT NULL,
            version     integer NOT NULL,
            item_weight double precision[] NOT NULL,
            PRIMARY KEY (model_id, version),
            FOREIGN KEY (model_id, version)
                REFERENCES recsys.model_version (model_id, version) ON DELETE CASCADE
        );
        COMMENT ON TABLE recsys.version_item_weight IS
            'summed raw weight per item index at training time (bm25/tfidf fold-in statistics)';
        """
    )
