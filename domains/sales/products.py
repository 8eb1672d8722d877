"""Sales products: what customers ordered, and what it earned."""

from dagmesh import Column, Domain, Landing
from dagmesh.orchestration.automation import on_cron, when_upstream_changes

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
                "invalid order_ts": "try_utc_timestamp(order_ts) IS NULL",
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
        with

        events as (
            select distinct
                event_id,
                trim(order_id) as order_id,
                trim(customer_id) as customer_id,
                lower(trim(status)) as status,
                utc_timestamp(order_ts) as ordered_at,
                utc_timestamp(updated_at) as updated_at,
                upper(trim(currency)) as currency,
                promised_delivery_date::date as promised_delivery_date
            from order_events
        ),

        final as (
            select
                order_id,
                min(customer_id) as customer_id,
                arg_max(status, updated_at) as status,
                min(ordered_at) as ordered_at,
                min(ordered_at)::date as order_date,
                min(promised_delivery_date) as promised_delivery_date,
                min(currency) as currency,
                max(updated_at) as updated_at,
                count(*)::integer as event_count
            from events
            group by order_id
        )

        select * from final
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
        select distinct
            order_id,
            line_no,
            sku,
            quantity,
            unit_price,
            (quantity * unit_price)::decimal(18, 2) as line_amount
        from order_lines
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
        with

        per_order as (
            select
                orders.order_id,
                orders.order_date,
                orders.status,
                sum(order_items.quantity) as units,
                sum(order_items.line_amount) as amount
            from orders
            inner join order_items
                on orders.order_id = order_items.order_id
            group by all
        ),

        final as (
            select
                order_date,
                count(*) as orders,
                sum(units)::bigint as units,
                sum(amount)::decimal(18, 2) as gross_revenue,
                coalesce(sum(amount) filter (where status = 'cancelled'), 0)::decimal(18, 2)
                    as cancelled_revenue,
                coalesce(sum(amount) filter (where status <> 'cancelled'), 0)::decimal(18, 2)
                    as net_revenue
            from per_order
            group by order_date
        )

        select * from final
        order by order_date
    """,
)
