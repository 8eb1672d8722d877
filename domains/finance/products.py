"""Finance products: refunds (here) and the cost of delivery delays (dbt)."""

from dagmesh import Column, Domain, Landing
from dagmesh.orchestration.automation import on_cron

# Refunds are ingested here; the cost of delays is built by the dbt project
# dbt_projects/finance (delay_costs, weekly_delay_impact).
finance = Domain(
    "finance",
    owner="finance",
    description="Refunds and the cost of delays.",
    dbt_project="dbt_projects/finance",
)

finance.sql_product(
    "refunds",
    classification="internal",
    refresh=on_cron("0 * * * *"),  # new landing files, hourly
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
        select distinct
            trim(refund_id) as refund_id,
            trim(order_id) as order_id,
            replace(trim(amount), ',', '.')::decimal(12, 2) as amount,
            upper(trim(currency)) as currency,
            try_utc_timestamp(refunded_at) as refunded_at,
            lower(trim(reason)) as reason
        from ledger_refunds
    """,
)
