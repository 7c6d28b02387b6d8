-- Named queries of recsys_db/gram.py. Each starts with "-- name: gram_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: gram_delete
-- A version's basis rows, and those of the model's versions that stopped serving.
DELETE FROM recsys.version_basis b
 USING recsys.model_version v
 WHERE b.model_id = %(model_id)s AND v.model_id = b.model_id AND v.version = b.version
   AND (b.version = %(version)s OR v.status NOT IN ('building', 'ready'));

-- name: gram_copy
-- Rows of a version's basis: model id, version, k, items, row k of YᵀY, column and row k of W.
COPY recsys.version_basis (model_id, version, k, items, gram, w_column, w_row) FROM STDIN;

-- name: gram_read_for_update
-- A version's item count, regularization and YᵀY rows in order, locked until the fold-in commits.
SELECT b.items, (v.params ->> 'regularization')::double precision, b.gram
  FROM recsys.version_basis b
  JOIN recsys.model_version v ON v.model_id = b.model_id AND v.version = b.version
 WHERE b.model_id = %(model_id)s AND b.version = %(version)s
 ORDER BY b.k
   FOR UPDATE OF b;

-- name: gram_items_from
-- The factors of the items from index start on (feature-mapped items), in index order.
SELECT factors::real[] FROM {table} WHERE idx >= %(start)s ORDER BY idx;

-- name: gram_missing
-- Ready versions without a basis: model id, version, item table, factors, regularization.
SELECT v.model_id, v.version, v.item_table, v.factors,
       (v.params ->> 'regularization')::double precision
  FROM recsys.model_version v
 WHERE v.status = 'ready'
   AND NOT EXISTS (SELECT FROM recsys.version_basis b
                    WHERE b.model_id = v.model_id AND b.version = v.version)
 ORDER BY v.model_id, v.version;

-- name: gram_sum
-- YᵀY of an item table (row-major; column d sums the vectors times their element d) and its rows.
SELECT (SELECT array_agg(e.x::double precision ORDER BY col.d, e.n)
          FROM (SELECT f.d, {vector}.sum(i.factors OPERATOR({vector}.*)
                                         array_fill(f.val, ARRAY[{dims}])::{vector}.vector) AS total
                  FROM {table} i, unnest(i.factors::real[]) WITH ORDINALITY f (val, d)
                 GROUP BY f.d) col,
               unnest(col.total::real[]) WITH ORDINALITY e (x, n)),
       (SELECT coalesce(max(idx) + 1, 0) FROM {table});
