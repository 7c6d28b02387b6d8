-- Named queries of recsys_db/timeline.py. Each starts with "-- name: timeline_..."
-- and a line saying what it does. Placeholders in braces are identifiers composed with
-- psycopg.sql, never user text.

-- name: timeline_copy_events
-- Every usable source row with a time, as (user index, item index, time in seconds, weight):
-- the keys through the maps of the load (their `native` type), the weight as training weighs
-- it (event weights applied). Rows with a NULL time have no place on a timeline.
COPY (SELECT u.idx, i.idx, {time}, {weight}
        FROM {source} s
        JOIN recsys_user_map u ON u.native = {user}
        JOIN recsys_item_map i ON i.native = {item}
       WHERE {time} IS NOT NULL AND {raw_weight} IS NOT NULL AND {event_ok})
  TO STDOUT (FORMAT BINARY);
