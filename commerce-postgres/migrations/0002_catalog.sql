-- Catalog: products, variants and categories.
-- `category` and `path` are COLLATE "C" so that a plain btree serves the byte-wise
-- subtree range of CategoryPath::subtree_range ("everything under Electronics").

CREATE TABLE categories (
    path text COLLATE "C" PRIMARY KEY,
    id   text NOT NULL
);

CREATE TABLE products (
    id         text COLLATE "C" PRIMARY KEY,
    slug       text COLLATE "C" NOT NULL,
    category   text COLLATE "C" NOT NULL,
    status     text NOT NULL,
    version    bigint NOT NULL,
    attributes jsonb NOT NULL,
    body       jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT products_slug_key UNIQUE (slug)
);
CREATE INDEX products_category ON products (category, id);
CREATE INDEX products_status ON products (status, id);
CREATE INDEX products_attributes ON products USING gin (attributes jsonb_path_ops);

CREATE TABLE variants (
    sku        text COLLATE "C" PRIMARY KEY,
    product_id text COLLATE "C" NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    position   int NOT NULL,
    body       jsonb NOT NULL
);
CREATE INDEX variants_product ON variants (product_id, position);
