"""Shipping products: shipments, returns and delivery delays."""

from dagmesh import Column, Domain, Landing
from dagmesh.automation import on_cron, when_upstream_changes

shipping = Domain(
    "shipping", owner="logistics", description="Shipments, returns and delivery delays."
)

RETURN_SHIPMENTS = Landing(
    "warehouse/return_shipments",
    "json",
    columns={
        "return_id": "VARCHAR",
        "order_id": "VARCHAR",
        "original_shipment_id": "VARCHAR",
        "returned_at": "VARCHAR",
        "reshipped_at": "VARCHAR",
        "reshipped_on": "VARCHAR",
        "delivered_at": "VARCHAR",
    },
    reject_if={"invalid reshipped_at": "try_utc_timestamp(reshipped_at) IS NULL"},
)

shipping.sql_product(
    "shipments",
    classification="internal",
    refresh=on_cron("0 * * * *"),  # new landing files, hourly
    description=(
        "One row per shipment. shipped_at is when we handed the parcel over, shipped_on the "
        "day the carrier scanned it; both are NULL for orders that were returned and "
        "reshipped (see returns)."
    ),
    sources={
        "warehouse_shipments": Landing(
            "warehouse/shipments",
            "parquet",
            columns={
                "shipment_id": "VARCHAR",
                "order_id": "VARCHAR",
                "carrier": "VARCHAR",
                "shipped_at": "TIMESTAMP",
                "shipped_on": "DATE",
                "delivered_at": "TIMESTAMP",
            },
        )
    },
    columns=[
        Column("shipment_id", "VARCHAR", "Shipment identifier.", nullable=False),
        Column("order_id", "VARCHAR", "The shipped order (sales/orders).", nullable=False),
        Column("carrier", "VARCHAR", "Carrier, lower case."),
        Column("shipped_at", "TIMESTAMP", "When we handed the parcel to the carrier (UTC)."),
        Column("shipped_on", "DATE", "When the carrier scanned the parcel."),
        Column("delivered_at", "TIMESTAMP", "When the parcel was delivered (UTC)."),
        Column("handover_days", "INTEGER", "shipped_on − date(shipped_at): carrier lag."),
    ],
    primary_key="shipment_id",
    sql="""
        select distinct
            shipment_id,
            order_id,
            lower(trim(carrier)) as carrier,
            shipped_at,
            shipped_on,
            delivered_at,
            (shipped_on - shipped_at::date)::integer as handover_days
        from warehouse_shipments
    """,
)

shipping.sql_product(
    "returns",
    classification="internal",
    refresh=on_cron("0 * * * *"),  # new landing files, hourly
    description="Orders returned to the warehouse and reshipped, with the delivery of the "
    "reshipment.",
    sources={"return_shipments": RETURN_SHIPMENTS},
    columns=[
        Column("return_id", "VARCHAR", "Return identifier.", nullable=False),
        Column("order_id", "VARCHAR", "The returned order (sales/orders).", nullable=False),
        Column("original_shipment_id", "VARCHAR", "The shipment that came back."),
        Column("returned_at", "TIMESTAMP", "When the parcel came back (UTC)."),
        Column("reshipped_at", "TIMESTAMP", "When we reshipped it (UTC).", nullable=False),
        Column("reshipped_on", "DATE", "When the carrier scanned the reshipment."),
        Column("delivered_at", "TIMESTAMP", "When the reshipment was delivered (UTC)."),
    ],
    primary_key="return_id",
    sql="""
        select distinct
            return_id,
            order_id,
            original_shipment_id,
            try_utc_timestamp(returned_at) as returned_at,
            utc_timestamp(reshipped_at) as reshipped_at,
            try_cast(reshipped_on as date) as reshipped_on,
            try_utc_timestamp(delivered_at) as delivered_at
        from return_shipments
    """,
)

shipping.sql_product(
    "shipping_delays",
    classification="internal",
    refresh=when_upstream_changes(),
    description=(
        "Per shipped order: promised vs actual delivery, days late and the cause "
        "(on_time, warehouse, carrier, return_reship)."
    ),
    consumes=["sales/orders", "shipments", "returns"],
    columns=[
        Column("order_id", "VARCHAR", "The order (sales/orders).", nullable=False),
        Column("customer_id", "VARCHAR", "Who is waiting for it.", nullable=False),
        Column("order_date", "DATE", "UTC order day."),
        Column("promised_delivery_date", "DATE", "Promised at checkout."),
        Column("delivered_date", "DATE", "Actual delivery day (reshipment for returns)."),
        Column("delay_days", "INTEGER", "Days after the promised date; 0 when on time."),
        Column(
            "cause",
            "VARCHAR",
            "on_time, warehouse, carrier, return_reship or in_transit.",
            nullable=False,
        ),
        Column("carrier", "VARCHAR", "Carrier of the original shipment."),
        Column("is_delayed", "BOOLEAN", "delay_days > 0.", nullable=False),
    ],
    primary_key="order_id",
    sql="""
        with

        delivered as (
            select
                orders.order_id,
                orders.customer_id,
                orders.order_date,
                orders.promised_delivery_date,
                coalesce(shipments.delivered_at, returns.delivered_at)::date as delivered_date,
                returns.return_id is not null as reshipped,
                shipments.handover_days,
                shipments.carrier
            from orders
            inner join shipments
                on orders.order_id = shipments.order_id
            left join returns
                on orders.order_id = returns.order_id
        ),

        measured as (
            select
                *,
                greatest(0, delivered_date - promised_delivery_date)::integer as delay_days
            from delivered
        ),

        final as (
            select
                order_id,
                customer_id,
                order_date,
                promised_delivery_date,
                delivered_date,
                delay_days,
                case
                    when delivered_date is null then 'in_transit'
                    when delay_days = 0 then 'on_time'
                    when reshipped then 'return_reship'
                    when handover_days >= 2 then 'carrier'
                    else 'warehouse'
                end as cause,
                carrier,
                coalesce(delay_days > 0, false) as is_delayed
            from measured
        )

        select * from final
    """,
)
