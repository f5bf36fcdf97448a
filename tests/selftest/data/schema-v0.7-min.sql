-- The v0.7.0 tables the reference bot uses, names as in ../shared/facts/bot-auto-order.md.
-- A stand-in for fixtures/schema-v0.6.sql + scripts/migrations/001_fix_schema_constraints.sql in the
-- smoke self-tests (fast to load, no dependency on the other fixtures).
CREATE TABLE users (
    id serial CONSTRAINT users_pkey PRIMARY KEY,
    telegram_id bigint NOT NULL CONSTRAINT users_telegram_id_key UNIQUE,
    username text, first_name text, last_name text,
    balance_cents bigint DEFAULT 0,
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now()
);
CREATE TABLE categories (
    id serial PRIMARY KEY,
    name text NOT NULL,
    slug text NOT NULL CONSTRAINT categories_slug_key UNIQUE,
    emoji text DEFAULT '🗂️', is_active boolean DEFAULT true,
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now()
);
CREATE TABLE products (
    id serial PRIMARY KEY,
    category_id integer CONSTRAINT products_category_id_fkey REFERENCES categories(id) ON DELETE SET NULL,
    code text NOT NULL CONSTRAINT products_code_key UNIQUE,
    name text NOT NULL, description text,
    price_cents bigint NOT NULL,
    stock integer NOT NULL DEFAULT 0, sold_count integer NOT NULL DEFAULT 0,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now()
);
CREATE TABLE coupons (
    id serial PRIMARY KEY,
    code text NOT NULL CONSTRAINT coupons_code_key UNIQUE,
    description text,
    discount_type text NOT NULL CONSTRAINT coupons_discount_type_check CHECK (discount_type IN ('percent', 'flat')),
    discount_value bigint NOT NULL,
    max_uses integer,
    used_count integer NOT NULL DEFAULT 0,
    valid_from timestamptz, valid_until timestamptz,
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
    CONSTRAINT check_used_count_non_negative CHECK (used_count >= 0),
    CONSTRAINT check_used_count_le_max_uses CHECK (max_uses IS NULL OR used_count <= max_uses)
);
CREATE TABLE orders (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    total_price_cents bigint NOT NULL,
    status text NOT NULL CONSTRAINT orders_status_check
        CHECK (status IN ('pending', 'awaiting_payment', 'paid', 'cancelled', 'expired')),
    coupon_id integer REFERENCES coupons(id) ON DELETE SET NULL,
    metadata jsonb DEFAULT '{}',
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now()
);
CREATE TABLE product_contents (
    id serial PRIMARY KEY,
    product_id integer NOT NULL CONSTRAINT product_contents_product_id_fkey REFERENCES products(id) ON DELETE CASCADE,
    content text NOT NULL CONSTRAINT product_contents_content_key UNIQUE,
    is_used boolean DEFAULT false,
    used_by_order_id uuid CONSTRAINT product_contents_used_by_order_id_fkey REFERENCES orders(id) ON DELETE SET NULL,
    created_at timestamptz DEFAULT now(), used_at timestamptz,
    CONSTRAINT check_used_at_when_used CHECK (
        (is_used = false AND used_at IS NULL AND used_by_order_id IS NULL) OR (is_used = true AND used_at IS NOT NULL))
);
CREATE TABLE order_items (
    id serial PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    product_id integer NOT NULL REFERENCES products(id) ON DELETE RESTRICT,
    quantity integer NOT NULL CONSTRAINT order_items_quantity_check CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL CONSTRAINT order_items_unit_price_cents_check CHECK (unit_price_cents >= 0),
    created_at timestamptz DEFAULT now()
);
CREATE TABLE payments (
    id serial PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    gateway_order_id text NOT NULL,
    method text NOT NULL,
    status text NOT NULL CONSTRAINT payments_status_check
        CHECK (status IN ('created', 'waiting', 'completed', 'failed', 'expired', 'cancelled')),
    amount_cents bigint NOT NULL CONSTRAINT payments_amount_cents_check CHECK (amount_cents >= 0),
    fee_cents bigint DEFAULT 0 CONSTRAINT payments_fee_cents_check CHECK (fee_cents >= 0),
    total_payment_cents bigint NOT NULL CONSTRAINT payments_total_payment_cents_check CHECK (total_payment_cents >= 0),
    expires_at timestamptz, payload jsonb DEFAULT '{}',
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
    UNIQUE (order_id, gateway_order_id)
);
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    "timestamp" timestamptz DEFAULT now(),
    actor_id text,
    action text NOT NULL,
    details jsonb NOT NULL,
    created_at timestamptz DEFAULT now()
);
CREATE INDEX idx_product_contents_unused ON product_contents (product_id, is_used) WHERE is_used = false;
