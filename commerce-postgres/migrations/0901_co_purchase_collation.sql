-- Rankings order ties by product id in byte order (COLLATE "C"); with the columns in
-- that collation the rank indexes serve top-K already sorted, without a sort step
-- over a best seller's thousands of partners.
ALTER TABLE co_purchase_pairs
    ALTER COLUMN product_id TYPE text COLLATE "C",
    ALTER COLUMN other_id TYPE text COLLATE "C";
ALTER TABLE co_purchase_popularity
    ALTER COLUMN product_id TYPE text COLLATE "C";
