"""Finance products: refunds and the cost of delivery delays."""

from dagmesh import Column, Domain, Landing

finance = Domain("finance", owner="finance", description="Refunds and the cost of delays.")

finance.sql_product(
    "refunds",
    description="Refunds booked in the ledger, amounts normalised to EUR decimals.",
    sources={
        "ledger_refunds": Landing(
            "ledger/refunds",
            "csv",
            columns=["refund_id", "order_id", "amount", "currency", "refunded_at", "reason"],
            reject_if={
                "invalid amount": "try_cast(replace(trim(amount), ',', '.') AS DECIMAL(12,2)) "
                "IS NULL",
            },
        )
    },
    columns=[
        Column("refund_id", "VARCHAR", "Refund identifier.", nullable=False),
        Column("order_id", "VARCHAR", "The refunded order (sales/orders).", nullable=False),
        Column("amount", "DECIMAL(12,2)", "Refunded amount (EUR).", nullable=False),
        Column("currency", "VARCHAR", "ISO 4217 currency code."),
        Column("refunded_at", "TIMESTAMP", "When the refund was booked (UTC)."),
        Column("reason", "VARCHAR", "late_delivery or damaged.", nullable=False),
    ],
    primary_key="refund_id",
    sql="""
        SELECT DISTINCT
            trim(refund_id) AS refund_id,
            trim(order_id) AS order_id,
            replace(trim(amount), ',', '.')::DECIMAL(12,2) AS amount,
            upper(trim(currency)) AS currency,
            timezone('UTC', try_cast(refunded_at AS TIMESTAMPTZ)) AS refunded_at,
            lower(trim(reason)) AS reason
        FROM ledger_refunds
    """,
)

finance.sql_product(
    "delay_costs",
    description="Per delayed order: the revenue at risk and what was refunded for lateness.",
    consumes=["shipping/shipping_delays", "sales/order_items", "refunds"],
    columns=[
        Column("order_id", "VARCHAR", "The delayed order.", nullable=False),
        Column("week", "DATE", "Monday of the promised delivery week.", nullable=False),
        Column("cause", "VARCHAR", "warehouse, carrier or return_reship.", nullable=False),
        Column("delay_days", "INTEGER", "Days late."),
        Column("revenue_at_risk", "DECIMAL(18,2)", "Order value (EUR).", nullable=False),
        Column("refunded", "DECIMAL(18,2)", "Refunded for late delivery (EUR).", nullable=False),
    ],
    primary_key="order_id",
    sql="""
        WITH order_value AS (
            SELECT order_id, sum(line_amount) AS value FROM order_items GROUP BY order_id
        ), late_refunds AS (
            SELECT order_id, sum(amount) AS refunded
            FROM refunds WHERE reason = 'late_delivery' GROUP BY order_id
        )
        SELECT
            d.order_id,
            date_trunc('week', d.promised_delivery_date)::DATE AS week,
            d.cause,
            d.delay_days,
            coalesce(v.value, 0)::DECIMAL(18,2) AS revenue_at_risk,
            coalesce(r.refunded, 0)::DECIMAL(18,2) AS refunded
        FROM shipping_delays d
        LEFT JOIN order_value v USING (order_id)
        LEFT JOIN late_refunds r USING (order_id)
        WHERE d.is_delayed
    """,
)

finance.sql_product(
    "weekly_delay_impact",
    description="What delays cost per week and cause: revenue at risk, refunds, refund rate.",
    consumes=["delay_costs"],
    columns=[
        Column("week", "DATE", "Monday of the promised delivery week.", nullable=False),
        Column("cause", "VARCHAR", "warehouse, carrier or return_reship.", nullable=False),
        Column("delayed_orders", "BIGINT", "Orders delivered late."),
        Column("avg_delay_days", "DOUBLE", "Mean days late."),
        Column("revenue_at_risk", "DECIMAL(18,2)", "Value of the late orders (EUR)."),
        Column("refunded", "DECIMAL(18,2)", "Refunded for lateness (EUR)."),
        Column("refund_rate", "DOUBLE", "refunded / revenue_at_risk."),
    ],
    primary_key=["week", "cause"],
    sql="""
        SELECT
            week,
            cause,
            count(*) AS delayed_orders,
            avg(delay_days) AS avg_delay_days,
            sum(revenue_at_risk)::DECIMAL(18,2) AS revenue_at_risk,
            sum(refunded)::DECIMAL(18,2) AS refunded,
            sum(refunded) / nullif(sum(revenue_at_risk), 0) AS refund_rate
        FROM delay_costs
        GROUP BY week, cause
        ORDER BY week, cause
    """,
)
