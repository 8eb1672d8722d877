"""Customer products: profiles (personal data) and the customer 360."""

from dagmesh import Column, Domain, Landing, pii
from dagmesh.automation import on_cron, when_upstream_changes

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
        SELECT DISTINCT
            trim(customer_id) AS customer_id,
            trim(full_name) AS full_name,
            lower(trim(email)) AS email,
            trim(phone) AS phone,
            trim(street_address) AS street_address,
            trim(city) AS city,
            upper(trim(country)) AS country,
            timezone('UTC', try_cast(signup_ts AS TIMESTAMPTZ)) AS signed_up_at
        FROM crm_customers
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
        Column("acquisition_channel", "VARCHAR", "organic, lead_generation, both or unknown."),
        Column("ad_platform", "VARCHAR", "Platform of the converting lead, if any."),
    ],
    primary_key="customer_id",
    sql="""
        WITH bought AS (
            SELECT o.customer_id, count(DISTINCT o.order_id) AS orders,
                   sum(i.line_amount) AS revenue,
                   min(o.ordered_at) AS first_order_at, max(o.ordered_at) AS last_order_at
            FROM orders o JOIN order_items i USING (order_id)
            WHERE o.status <> 'cancelled'
            GROUP BY o.customer_id
        ), waited AS (
            SELECT customer_id, count(*) FILTER (WHERE is_delayed) AS delayed_orders,
                   max(delay_days) AS max_delay_days
            FROM shipping_delays GROUP BY customer_id
        ), acquired AS (
            SELECT customer_id, arg_min(channel, lead_id) AS channel,
                   arg_min(ad_platform, lead_id) AS ad_platform
            FROM lead_attribution WHERE customer_id IS NOT NULL GROUP BY customer_id
        )
        SELECT
            p.customer_id,
            p.full_name,
            p.email,
            p.country,
            coalesce(b.orders, 0)::BIGINT AS orders,
            coalesce(b.revenue, 0)::DECIMAL(18,2) AS lifetime_revenue,
            b.first_order_at,
            b.last_order_at,
            coalesce(w.delayed_orders, 0)::BIGINT AS delayed_orders,
            coalesce(w.max_delay_days, 0)::INTEGER AS max_delay_days,
            coalesce(a.channel, 'unknown') AS acquisition_channel,
            a.ad_platform
        FROM customer_profiles p
        LEFT JOIN bought b USING (customer_id)
        LEFT JOIN waited w USING (customer_id)
        LEFT JOIN acquired a USING (customer_id)
    """,
)
