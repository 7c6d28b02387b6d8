-- Named queries of recsys_db/timeline.py. Each starts with "-- name: timeline_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: timeline_events
-- Every usable source row with a time, as one bytea of fixed-width big-endian records (user
-- index int4, item index int4, time in seconds float8, weight float8): the keys through the
-- maps of the load (their `native` type), the weight as training weighs it (event weights
-- applied). One value instead of a COPY row per interaction, which costs the client a
-- message each (measured: 5 us a row). {chunk} keeps a share of the users, so that a value
-- stays far below bytea's 1 GB. Rows with a NULL time have no place on a timeline.
SELECT coalesce(string_agg(int4send(u.idx) || int4send(i.idx) || float8send({time})
                           || float8send({weight}), ''::bytea), ''::bytea)
  FROM {source} s
  JOIN recsys_user_map u ON u.native = {user}
  JOIN recsys_item_map i ON i.native = {item}
 WHERE {time} IS NOT NULL AND {raw_weight} IS NOT NULL AND {event_ok} AND {chunk};
