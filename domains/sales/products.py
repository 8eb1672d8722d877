"""Sales products: what customers ordered, and what it earned."""

from dagmesh import Column, Domain, Landing
from dagmesh.automation import on_cron, when_upstream_changes

sales = Domain(
    "sales", owner="sales", description="The web shop's orders, order lines and revenue."
)

sales.sql_product(
    "orders",
    classification="internal",
    refresh=on_cron("0 * * * *"),  # new landing files, hourly
    description=(
        "One row per order with its current status. Built from the shop's order events: "
        "exact duplicates removed, the latest event (also when it arrives late) sets the "
        "status, timestamps converted to UTC."
    ),
    sources={
        "order_events": Landing(
            "shop/orders",
            "csv",
            columns=[
                "event_id",
                "order_id",
                "customer_id",
                "status",
                "order_ts",
                "updated_at",
                "currency",
                "promised_delivery_date",
            ],
            reject_if={
                "missing order_id": "nullif(trim(order_id), '') IS NULL",
                "invalid order_ts": "try_cast(order_ts AS TIMESTAMPTZ) IS NULL",
            },
        )
    },
    columns=[
        Column("order_id", "VARCHAR", "Order identifier.", nullable=False),
        Column("customer_id", "VARCHAR", "The customer who ordered.", nullable=False),
        Column(
            "status", "VARCHAR", "placed, paid, shipped, delivered or cancelled.", nullable=False
        ),
        Column("ordered_at", "TIMESTAMP", "When the order was placed (UTC).", nullable=False),
        Column("order_date", "DATE", "UTC date of ordered_at.", nullable=False),
        Column("promised_delivery_date", "DATE", "Delivery date promised at checkout."),
        Column("currency", "VARCHAR", "ISO 4217 currency code."),
        Column("updated_at", "TIMESTAMP", "Time of the order's latest event (UTC)."),
        Column("event_count", "INTEGER", "Distinct events received for the order."),
    ],
    primary_key="order_id",
    sql="""
        WITH events AS (
            SELECT DISTINCT
                event_id,
                trim(order_id) AS order_id,
                trim(customer_id) AS customer_id,
                lower(trim(status)) AS status,
                timezone('UTC', order_ts::TIMESTAMPTZ) AS ordered_at,
                timezone('UTC', updated_at::TIMESTAMPTZ) AS updated_at,
                upper(trim(currency)) AS currency,
                promised_delivery_date::DATE AS promised_delivery_date
            FROM order_events
        )
        SELECT
            order_id,
            min(customer_id) AS customer_id,
            arg_max(status, updated_at) AS status,
            min(ordered_at) AS ordered_at,
            min(ordered_at)::DATE AS order_date,
            min(promised_delivery_date) AS promised_delivery_date,
            min(currency) AS currency,
            max(updated_at) AS updated_at,
            count(*)::INTEGER AS event_count
        FROM events
        GROUP BY order_id
    """,
)

sales.sql_product(
    "order_items",
    classification="internal",
    refresh=on_cron("0 * * * *"),  # new landing files, hourly
    description="One row per order line, duplicates removed; lines with no price or a "
    "non-positive quantity are quarantined.",
    sources={
        "order_lines": Landing(
            "shop/order_items",
            "json",
            columns={
                "order_id": "VARCHAR",
                "line_no": "INTEGER",
                "sku": "VARCHAR",
                "quantity": "INTEGER",
                "unit_price": "DECIMAL(10,2)",
            },
            reject_if={
                "non-positive quantity": "quantity <= 0",
                "missing unit_price": "unit_price IS NULL",
            },
        )
    },
    columns=[
        Column("order_id", "VARCHAR", "The order the line belongs to.", nullable=False),
        Column("line_no", "INTEGER", "Line number within the order.", nullable=False),
        Column("sku", "VARCHAR", "Stock keeping unit ordered."),
        Column("quantity", "INTEGER", "Units ordered (positive).", nullable=False),
        Column("unit_price", "DECIMAL(10,2)", "Price of one unit in EUR.", nullable=False),
        Column("line_amount", "DECIMAL(18,2)", "quantity × unit_price in EUR.", nullable=False),
    ],
    primary_key=["order_id", "line_no"],
    sql="""
        SELECT DISTINCT
            order_id,
            line_no,
            sku,
            quantity,
            unit_price,
            (quantity * unit_price)::DECIMAL(18,2) AS line_amount
        FROM order_lines
    """,
)

sales.sql_product(
    "daily_revenue",
    classification="internal",
    refresh=when_upstream_changes(),
    description="Revenue per order day: gross (every order), cancelled, and net of cancellations.",
    consumes=["orders", "order_items"],
    columns=[
        Column("order_date", "DATE", "UTC order day.", nullable=False),
        Column("orders", "BIGINT", "Orders placed that day."),
        Column("units", "BIGINT", "Units ordered that day."),
        Column("gross_revenue", "DECIMAL(18,2)", "Sum of all order lines (EUR)."),
        Column("cancelled_revenue", "DECIMAL(18,2)", "Order lines of cancelled orders (EUR)."),
        Column("net_revenue", "DECIMAL(18,2)", "gross_revenue − cancelled_revenue (EUR)."),
    ],
    primary_key="order_date",
    sql="""
        WITH per_order AS (
            SELECT o.order_id, o.order_date, o.status,
                   sum(i.quantity) AS units, sum(i.line_amount) AS amount
            FROM orders o JOIN order_items i USING (order_id)
            GROUP BY ALL
        )
        SELECT
            order_date,
            count(*) AS orders,
            sum(units)::BIGINT AS units,
            sum(amount)::DECIMAL(18,2) AS gross_revenue,
            coalesce(sum(amount) FILTER (WHERE status = 'cancelled'), 0)::DECIMAL(18,2)
                AS cancelled_revenue,
            coalesce(sum(amount) FILTER (WHERE status <> 'cancelled'), 0)::DECIMAL(18,2)
                AS net_revenue
        FROM per_order
        GROUP BY order_date
        ORDER BY order_date
    """,
)
