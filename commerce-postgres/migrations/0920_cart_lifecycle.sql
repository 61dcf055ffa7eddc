-- Cart lifecycle: the last write and the line count of each cart as columns, so that
-- abandoned carts (non-empty, untouched since a time) are listed from an index, and the
-- expiry sweeper (which uses carts_expiry) deletes in small batches.
-- Times are truncated to microseconds as sqlx writes them (never rounded up).
ALTER TABLE carts ADD COLUMN updated_at timestamptz;
ALTER TABLE carts ADD COLUMN lines integer;
UPDATE carts SET
    updated_at = regexp_replace(body->>'updated_at', '(\.[0-9]{6})[0-9]+', '\1')::timestamptz,
    lines = jsonb_array_length(body->'items');
ALTER TABLE carts ALTER COLUMN updated_at SET NOT NULL;
ALTER TABLE carts ALTER COLUMN lines SET NOT NULL;
CREATE INDEX carts_abandoned ON carts (updated_at, id) WHERE lines > 0;
