-- The self-tests' "good" v0.7.0 database when scripts/run_migration.py cannot be used: what
-- scripts/migrations/001_fix_schema_constraints.sql leaves behind,
-- applied on top of fixtures/schema-v0.6.sql + schema-v0.6-runtime.sql with clean data loaded
-- (so no cleanup is needed). Names and definitions follow /work/shared/facts/bot-auto-order.md and
-- checklists/v0.7.0-expected.toml; the self-tests break one thing at a time from here.

CREATE TABLE IF NOT EXISTS schema_migrations (
    id SERIAL PRIMARY KEY,
    migration_name TEXT NOT NULL UNIQUE,
    executed_at TIMESTAMPTZ DEFAULT now(),
    execution_time_ms INTEGER,
    status TEXT NOT NULL CHECK (status IN ('success', 'failed', 'rollback')),
    error_message TEXT,
    created_at TIMESTAMPTZ DEFAULT now()
);

-- Where the cleanup moves the rows it resolves, whole (none in clean data, but the table exists).
CREATE TABLE IF NOT EXISTS migration_quarantine (
    id BIGSERIAL PRIMARY KEY,
    migration_name TEXT NOT NULL,
    source_table TEXT NOT NULL,
    source_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    kept_id TEXT,
    row_data JSONB NOT NULL,
    quarantined_at TIMESTAMPTZ DEFAULT now()
);

ALTER TABLE coupons ALTER COLUMN used_count SET DEFAULT 0, ALTER COLUMN used_count SET NOT NULL;
ALTER TABLE product_contents ALTER COLUMN is_used SET NOT NULL;
ALTER TABLE coupons ADD CONSTRAINT check_used_count_non_negative CHECK (used_count >= 0);
ALTER TABLE coupons ADD CONSTRAINT check_used_count_le_max_uses CHECK (max_uses IS NULL OR used_count <= max_uses);

ALTER TABLE order_items ADD CONSTRAINT order_items_quantity_check CHECK (quantity > 0);
ALTER TABLE order_items ADD CONSTRAINT order_items_unit_price_cents_check CHECK (unit_price_cents >= 0);

ALTER TABLE product_contents ADD CONSTRAINT product_contents_content_key UNIQUE (content);
ALTER TABLE product_contents ADD CONSTRAINT check_used_at_when_used CHECK (
    (is_used = FALSE AND used_at IS NULL AND used_by_order_id IS NULL) OR
    (is_used = TRUE AND used_at IS NOT NULL));

ALTER TABLE payments ADD CONSTRAINT payments_amount_cents_check CHECK (amount_cents >= 0);
ALTER TABLE payments ADD CONSTRAINT payments_fee_cents_check CHECK (fee_cents >= 0);
ALTER TABLE payments ADD CONSTRAINT payments_total_payment_cents_check CHECK (total_payment_cents >= 0);

ALTER TABLE deposits DROP CONSTRAINT IF EXISTS deposits_status_check;
ALTER TABLE deposits ADD CONSTRAINT deposits_status_check
    CHECK (status IN ('pending', 'completed', 'failed', 'expired', 'cancelled'));
ALTER TABLE deposits ADD CONSTRAINT deposits_amount_cents_check CHECK (amount_cents > 0);
ALTER TABLE deposits ADD CONSTRAINT deposits_fee_cents_check CHECK (fee_cents >= 0);
ALTER TABLE deposits ADD CONSTRAINT deposits_payable_cents_check CHECK (payable_cents >= 0);

ALTER TABLE product_term_submissions ADD CONSTRAINT product_term_submissions_unique_submission
    UNIQUE (order_id, product_id, telegram_user_id);

CREATE TABLE IF NOT EXISTS audit_log (
    id BIGSERIAL PRIMARY KEY,
    "timestamp" TIMESTAMPTZ DEFAULT now(),
    actor_id TEXT,
    action TEXT NOT NULL,
    details JSONB NOT NULL,
    created_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_products_active ON products (category_id, name) WHERE is_active = true;
CREATE INDEX IF NOT EXISTS idx_orders_status ON orders (status);
CREATE INDEX IF NOT EXISTS idx_orders_created_at ON orders (created_at DESC);
CREATE INDEX IF NOT EXISTS idx_orders_coupon ON orders (coupon_id) WHERE coupon_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_order_items_order ON order_items (order_id);
CREATE INDEX IF NOT EXISTS idx_order_items_product ON order_items (product_id);
CREATE INDEX IF NOT EXISTS idx_product_contents_used_by_order ON product_contents (used_by_order_id)
    WHERE used_by_order_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_payments_order ON payments (order_id);
CREATE INDEX IF NOT EXISTS idx_payments_status ON payments (status);
CREATE INDEX IF NOT EXISTS idx_deposits_user ON deposits (user_id);
CREATE INDEX IF NOT EXISTS idx_deposits_status ON deposits (status);
CREATE INDEX IF NOT EXISTS idx_deposits_gateway ON deposits (gateway_order_id) WHERE gateway_order_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_deposits_created_at ON deposits (created_at DESC);
CREATE INDEX IF NOT EXISTS idx_coupons_validity ON coupons (valid_from, valid_until);
CREATE INDEX IF NOT EXISTS idx_product_term_submissions_product ON product_term_submissions (product_id);
CREATE INDEX IF NOT EXISTS idx_product_term_submissions_user ON product_term_submissions (telegram_user_id);
CREATE INDEX IF NOT EXISTS idx_product_term_notifications_product ON product_term_notifications (product_id);
CREATE INDEX IF NOT EXISTS idx_product_term_notifications_pending ON product_term_notifications (created_at)
    WHERE responded_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_audit_log_timestamp ON audit_log ("timestamp" DESC);
CREATE INDEX IF NOT EXISTS idx_audit_log_actor ON audit_log (actor_id);
CREATE INDEX IF NOT EXISTS idx_audit_log_action ON audit_log (action);
CREATE INDEX IF NOT EXISTS idx_users_created_at ON users (created_at);

INSERT INTO schema_migrations (migration_name, execution_time_ms, status)
VALUES ('001_fix_schema_constraints.sql', 1234, 'success');

ANALYZE;
