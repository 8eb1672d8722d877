"""Customer products: profiles (personal data) and the customer 360."""

from dagmesh import Column, Domain, Landing, pii
from dagmesh.orchestration.automation import on_cron, when_upstream_changes

customers = Domain(
    "customers", owner="customer-experience", description="Customer profiles and the 360 view."
)

customers.sql_product(
    "customer_profiles",
    classification="internal",
    refresh=on_cron("0 * * * *"),  # new landing files, hourly
    description="One row per customer from the CRM: contact details (personal data), "
    "country and signup time in UTC.",
    sources={
        "crm_customers": Landing(
            "crm/customers",
            "csv",
            columns=[
                "customer_id",
                "full_name",
                "email",
                "phone",
                "street_address",
                "city",
                "country",
                "signup_ts",
            ],
            reject_if={"missing customer_id": "nullif(trim(customer_id), '') IS NULL"},
        )
    },
    columns=[
        Column("customer_id", "VARCHAR", "Customer identifier.", nullable=False),
        pii("full_name", "VARCHAR", "Customer's full name."),
        pii("email", "VARCHAR", "Email, lower case.", joinable=True),
        pii("phone", "VARCHAR", "Phone number."),
        pii("street_address", "VARCHAR", "Street and number."),
        Column("city", "VARCHAR", "City."),
        Column("country", "VARCHAR", "ISO 3166 country code, upper case."),
        Column("signed_up_at", "TIMESTAMP", "When the customer signed up (UTC)."),
    ],
    primary_key="customer_id",
    sql="""
        select distinct
            trim(customer_id) as customer_id,
            trim(full_name) as full_name,
            lower(trim(email)) as email,
            trim(phone) as phone,
            trim(street_address) as street_address,
            trim(city) as city,
            upper(trim(country)) as country,
            try_utc_timestamp(signup_ts) as signed_up_at
        from crm_customers
    """,
)

customers.sql_product(
    "customer_360",
    classification="internal",
    refresh=when_upstream_changes(),
    description=(
        "Everything about a customer in one row: profile, orders and revenue (sales), "
        "delivery experience (shipping) and how they were acquired (marketing)."
    ),
    consumes=[
        "customer_profiles",
        "sales/orders",
        "sales/order_items",
        "shipping/shipping_delays",
        "shipping/open_order_delay_risk",
        "marketing/lead_attribution",
    ],
    columns=[
        Column("customer_id", "VARCHAR", "Customer identifier.", nullable=False),
        pii("full_name", "VARCHAR", "Customer's full name."),
        pii("email", "VARCHAR", "Email, lower case.", joinable=True),
        Column("country", "VARCHAR", "ISO 3166 country code."),
        Column("orders", "BIGINT", "Orders placed, cancelled ones excluded."),
        Column("lifetime_revenue", "DECIMAL(18,2)", "Revenue of those orders (EUR)."),
        Column("first_order_at", "TIMESTAMP", "First order (UTC)."),
        Column("last_order_at", "TIMESTAMP", "Latest order (UTC)."),
        Column("delayed_orders", "BIGINT", "Orders delivered after the promised date."),
        Column("max_delay_days", "INTEGER", "Longest delay experienced, in days."),
        Column(
            "open_order_delay_risk",
            "DOUBLE",
            "Highest delay risk of the customer's open orders (shipping/open_order_delay_risk); "
            "NULL without open orders.",
        ),
        Column("acquisition_channel", "VARCHAR", "organic, lead_generation, both or unknown."),
        Column("ad_platform", "VARCHAR", "Platform of the converting lead, if any."),
    ],
    primary_key="customer_id",
    sql="""
        with

        bought as (
            select
                orders.customer_id,
                count(distinct orders.order_id) as orders,
                sum(order_items.line_amount) as revenue,
                min(orders.ordered_at) as first_order_at,
                max(orders.ordered_at) as last_order_at
            from orders
            inner join order_items
                on orders.order_id = order_items.order_id
            where orders.status <> 'cancelled'
            group by orders.customer_id
        ),

        waited as (
            select
                customer_id,
                count(*) filter (where is_delayed) as delayed_orders,
                max(delay_days) as max_delay_days
            from shipping_delays
            group by customer_id
        ),

        at_risk as (
            select
                customer_id,
                max(delay_risk) as open_order_delay_risk
            from open_order_delay_risk
            group by customer_id
        ),

        acquired as (
            select
                customer_id,
                arg_min(channel, lead_id) as channel,
                arg_min(ad_platform, lead_id) as ad_platform
            from lead_attribution
            where customer_id is not null
            group by customer_id
        ),

        final as (
            select
                customer_profiles.customer_id,
                customer_profiles.full_name,
                customer_profiles.email,
                customer_profiles.country,
                coalesce(bought.orders, 0)::bigint as orders,
                coalesce(bought.revenue, 0)::decimal(18, 2) as lifetime_revenue,
                bought.first_order_at,
                bought.last_order_at,
                coalesce(waited.delayed_orders, 0)::bigint as delayed_orders,
                coalesce(waited.max_delay_days, 0)::integer as max_delay_days,
                at_risk.open_order_delay_risk,
                coalesce(acquired.channel, 'unknown') as acquisition_channel,
                acquired.ad_platform
            from customer_profiles
            left join bought
                on customer_profiles.customer_id = bought.customer_id
            left join waited
                on customer_profiles.customer_id = waited.customer_id
            left join at_risk
                on customer_profiles.customer_id = at_risk.customer_id
            left join acquired
                on customer_profiles.customer_id = acquired.customer_id
        )

        select * from final
    """,
)
