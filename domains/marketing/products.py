"""Marketing products: leads, attribution and ad-platform audiences."""

import pandas as pd

from dagmesh import Column, Domain, Landing, ProductContext, pii

marketing = Domain(
    "marketing", owner="growth", description="CRM leads, attribution and ad audiences."
)

marketing.sql_product(
    "crm_leads",
    description=(
        "CRM leads with their acquisition channel: organic, lead_generation or both "
        "(the CRM's many spellings normalised)."
    ),
    sources={
        "leads": Landing(
            "crm/leads",
            "json",
            columns={
                "lead_id": "VARCHAR",
                "email": "VARCHAR",
                "channel": "VARCHAR",
                "ad_platform": "VARCHAR",
                "created_at": "VARCHAR",
                "customer_id": "VARCHAR",
            },
            reject_if={
                "unknown channel": "regexp_replace(lower(trim(channel)), '[^a-z]', '', 'g') "
                "NOT IN ('organic', 'leadgeneration', 'leadgen', 'both')",
                "invalid created_at": "try_cast(created_at AS TIMESTAMPTZ) IS NULL",
            },
        )
    },
    columns=[
        Column("lead_id", "VARCHAR", "Lead identifier.", nullable=False),
        pii("email", "VARCHAR", "Lead's email, lower case."),
        Column("channel", "VARCHAR", "organic, lead_generation or both.", nullable=False),
        Column("ad_platform", "VARCHAR", "google, meta or linkedin; NULL when organic."),
        Column("created_at", "TIMESTAMP", "When the lead was created (UTC)."),
        Column("customer_id", "VARCHAR", "The customer the lead became, if any."),
    ],
    primary_key="lead_id",
    sql="""
        SELECT DISTINCT
            lead_id,
            lower(trim(email)) AS email,
            CASE regexp_replace(lower(trim(channel)), '[^a-z]', '', 'g')
                WHEN 'organic' THEN 'organic'
                WHEN 'both' THEN 'both'
                ELSE 'lead_generation'
            END AS channel,
            lower(trim(ad_platform)) AS ad_platform,
            timezone('UTC', created_at::TIMESTAMPTZ) AS created_at,
            nullif(trim(customer_id), '') AS customer_id
        FROM leads
    """,
)

marketing.sql_product(
    "lead_attribution",
    description="Per lead: did it convert, and the orders and revenue of the customer it "
    "became, credited to the lead's channel and ad platform.",
    consumes=["crm_leads", "sales/orders", "sales/order_items"],
    columns=[
        Column("lead_id", "VARCHAR", "Lead identifier.", nullable=False),
        Column("customer_id", "VARCHAR", "The customer the lead became, if any."),
        Column("channel", "VARCHAR", "organic, lead_generation or both.", nullable=False),
        Column("ad_platform", "VARCHAR", "google, meta or linkedin; NULL when organic."),
        Column("converted", "BOOLEAN", "The lead placed at least one order.", nullable=False),
        Column("first_order_at", "TIMESTAMP", "The customer's first order (UTC)."),
        Column("orders", "BIGINT", "Orders placed, cancelled ones excluded."),
        Column("revenue", "DECIMAL(18,2)", "Revenue of those orders (EUR)."),
    ],
    primary_key="lead_id",
    sql="""
        WITH customer_orders AS (
            SELECT o.customer_id, min(o.ordered_at) AS first_order_at,
                   count(DISTINCT o.order_id) AS orders, sum(i.line_amount) AS revenue
            FROM orders o JOIN order_items i USING (order_id)
            WHERE o.status <> 'cancelled'
            GROUP BY o.customer_id
        )
        SELECT
            l.lead_id,
            l.customer_id,
            l.channel,
            l.ad_platform,
            c.customer_id IS NOT NULL AS converted,
            c.first_order_at,
            coalesce(c.orders, 0)::BIGINT AS orders,
            coalesce(c.revenue, 0)::DECIMAL(18,2) AS revenue
        FROM crm_leads l
        LEFT JOIN customer_orders c USING (customer_id)
    """,
)

marketing.sql_product(
    "ad_audiences",
    description=(
        "Audiences per ad platform, members identified by the SHA-256 of their normalised "
        "email as the platforms expect: converted customers to exclude from acquisition, "
        "open leads to retarget, and customers whose order arrived late to win back."
    ),
    consumes=["crm_leads", "lead_attribution", "shipping/shipping_delays"],
    columns=[
        Column("ad_platform", "VARCHAR", "google, meta or linkedin.", nullable=False),
        Column(
            "audience",
            "VARCHAR",
            "converted_customers, open_leads or delayed_customers.",
            nullable=False,
        ),
        Column(
            "email_sha256",
            "VARCHAR",
            "SHA-256 of the lower-case email.",
            nullable=False,
            classification="pseudonymous",
        ),
        Column("lead_id", "VARCHAR", "The CRM lead.", nullable=False),
    ],
    primary_key=["ad_platform", "audience", "lead_id"],
    sql="""
        WITH members AS (
            SELECT l.ad_platform, l.lead_id, l.email, a.converted, l.customer_id
            FROM crm_leads l JOIN lead_attribution a USING (lead_id)
            WHERE l.ad_platform IS NOT NULL AND l.email IS NOT NULL
        ), delayed AS (
            SELECT DISTINCT customer_id FROM shipping_delays WHERE is_delayed
        )
        SELECT ad_platform, 'converted_customers' AS audience, sha256(email) AS email_sha256,
               lead_id
        FROM members WHERE converted
        UNION ALL
        SELECT ad_platform, 'open_leads', sha256(email), lead_id
        FROM members WHERE NOT converted
        UNION ALL
        SELECT m.ad_platform, 'delayed_customers', sha256(m.email), m.lead_id
        FROM members m JOIN delayed d USING (customer_id)
    """,
)


@marketing.python_product(
    description=(
        "Reverse ETL: each ad platform's audiences written as a CSV file into the marketing "
        "outbox (outbox/<platform>/<audience>.csv) for the platform's uploader; one row per "
        "file sent."
    ),
    consumes=["ad_audiences"],
    columns=[
        Column("ad_platform", "VARCHAR", "Destination platform.", nullable=False),
        Column("audience", "VARCHAR", "Audience name.", nullable=False),
        Column("members", "BIGINT", "Rows in the file.", nullable=False),
        Column("file", "VARCHAR", "Path of the file in the outbox.", nullable=False),
    ],
    primary_key=["ad_platform", "audience"],
)
def audience_exports(ctx: ProductContext) -> pd.DataFrame:
    """Send one file of hashed emails per platform and audience; list what was sent."""
    audiences = ctx.sql(
        "SELECT ad_platform, audience, count(*) FROM ad_audiences GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    sent = []
    for platform, audience, members in audiences:
        emails = ctx.sql(
            "SELECT email_sha256 FROM ad_audiences "
            "WHERE ad_platform = $platform AND audience = $audience ORDER BY email_sha256",
            params={"platform": platform, "audience": audience},
        )
        file = ctx.send_to_outbox(emails, f"{platform}/{audience}.csv")
        sent.append((platform, audience, members, str(file)))
    ctx.log.info(f"sent {len(sent)} audience files to {ctx.outbox}")
    return pd.DataFrame(sent, columns=["ad_platform", "audience", "members", "file"]).astype(
        {"members": "int64"}
    )
