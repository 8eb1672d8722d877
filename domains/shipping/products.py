"""Shipping products: shipments, returns and delivery delays."""

from dagmesh import Column, Domain, Landing
from dagmesh.orchestration.automation import on_cron, when_upstream_changes

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
                "destination_country": "VARCHAR",
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
        Column("destination_country", "VARCHAR", "ISO 3166 code of the delivery country."),
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
            upper(trim(destination_country)) as destination_country,
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
        Column("destination_country", "VARCHAR", "ISO 3166 code of the delivery country."),
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
                shipments.carrier,
                shipments.destination_country
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
                destination_country,
                coalesce(delay_days > 0, false) as is_delayed
            from measured
        )

        select * from final
    """,
)


def delay_estimator():
    """Gradient-boosted trees: handle the categories' interactions (a slow
    carrier to a slow country) without hand-made crosses. Imported here:
    scikit-learn costs a second to import, which only training pays."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.05, min_samples_leaf=50, random_state=0
    )


# What is known of an order at checkout, the same in training and scoring.
DELAY_FEATURES = [
    Column("carrier", "VARCHAR", "Carrier chosen for the order."),
    Column("destination_country", "VARCHAR", "Delivery country (ISO 3166)."),
    Column("promised_days", "INTEGER", "Days between the order and the promised delivery."),
    Column("order_weekday", "VARCHAR", "Weekday the order was placed (UTC)."),
    Column("basket_lines", "INTEGER", "Order lines in the basket."),
    Column("basket_value", "DOUBLE", "Value of the basket (EUR)."),
    Column("customer_prior_orders", "INTEGER", "The customer's earlier shipped orders."),
    Column("customer_prior_delays", "INTEGER", "How many of those were delivered late."),
]

BASKETS = """
    baskets as (
        select
            order_id,
            count(*)::integer as basket_lines,
            sum(line_amount)::double as basket_value
        from order_items
        group by order_id
    )
"""

shipping.model_product(
    "delay_risk_model",
    description=(
        "Will an order be delivered late? A classifier of what is known at checkout (carrier, "
        "delivery country, promised days, weekday, basket, the customer's past delays), "
        "trained on delivered orders and evaluated on the latest 20 % of order days."
    ),
    refresh=when_upstream_changes(),
    classification="internal",
    consumes=["sales/orders", "sales/order_items", "shipping_delays"],
    features=DELAY_FEATURES,
    target="is_delayed",
    time_column="order_date",
    estimator=delay_estimator,
    training_sql=f"""
        with

        {BASKETS},

        history as (
            select
                order_id,
                (count(*) over earlier)::integer as customer_prior_orders,
                coalesce(sum(is_delayed::integer) over earlier, 0)::integer
                    as customer_prior_delays
            from shipping_delays
            window earlier as (
                partition by customer_id
                order by order_date, order_id
                rows between unbounded preceding and 1 preceding
            )
        )

        select
            shipping_delays.order_id,
            shipping_delays.order_date,
            shipping_delays.carrier,
            shipping_delays.destination_country,
            (orders.promised_delivery_date - orders.order_date)::integer as promised_days,
            dayname(orders.ordered_at) as order_weekday,
            baskets.basket_lines,
            baskets.basket_value,
            history.customer_prior_orders,
            history.customer_prior_delays,
            shipping_delays.is_delayed
        from shipping_delays
        inner join orders
            on shipping_delays.order_id = orders.order_id
        inner join history
            on shipping_delays.order_id = history.order_id
        left join baskets
            on shipping_delays.order_id = baskets.order_id
        where shipping_delays.cause <> 'in_transit'
    """,
)

# A delay of the same customer earlier than the open order (by day, then order id).
EARLIER = """(
    shipping_delays.order_date < open_orders.order_date
    or (
        shipping_delays.order_date = open_orders.order_date
        and shipping_delays.order_id < open_orders.order_id
    )
)"""

shipping.scoring_product(
    "open_order_delay_risk",
    description=(
        "The delay risk of every open order (placed, paid or shipped, not yet delivered): "
        "the probability delay_risk_model gives it, and the model version that scored it."
    ),
    refresh=when_upstream_changes(),
    classification="internal",
    model="delay_risk_model",
    consumes=["sales/orders", "sales/order_items", "shipments", "shipping_delays"],
    score_column="delay_risk",
    columns=[
        Column("order_id", "VARCHAR", "The open order (sales/orders).", nullable=False),
        Column("customer_id", "VARCHAR", "Who is waiting for it.", nullable=False),
        Column("order_date", "DATE", "UTC order day."),
        Column("status", "VARCHAR", "placed, paid or shipped.", nullable=False),
        *DELAY_FEATURES[:2],
    ],
    primary_key="order_id",
    sql=f"""
        with

        {BASKETS},

        open_orders as (
            select *
            from orders
            where status in ('placed', 'paid', 'shipped')
        ),

        -- Only the equality joins (a hash join); "earlier than this order" filters
        -- the aggregates. With the OR in the join condition DuckDB plans a nested
        -- loop join over all orders: hours at 1M orders, not seconds.
        history as (
            select
                open_orders.order_id,
                count(shipping_delays.order_id) filter (where {EARLIER})::integer
                    as customer_prior_orders,
                coalesce(sum(shipping_delays.is_delayed::integer) filter (where {EARLIER}), 0)
                    ::integer as customer_prior_delays
            from open_orders
            left join shipping_delays
                on open_orders.customer_id = shipping_delays.customer_id
            group by open_orders.order_id
        )

        select
            open_orders.order_id,
            open_orders.customer_id,
            open_orders.order_date,
            open_orders.status,
            shipments.carrier,
            shipments.destination_country,
            (open_orders.promised_delivery_date - open_orders.order_date)::integer
                as promised_days,
            dayname(open_orders.ordered_at) as order_weekday,
            baskets.basket_lines,
            baskets.basket_value,
            history.customer_prior_orders,
            history.customer_prior_delays
        from open_orders
        inner join history
            on open_orders.order_id = history.order_id
        left join shipments
            on open_orders.order_id = shipments.order_id
        left join baskets
            on open_orders.order_id = baskets.order_id
    """,
)
