"""Marketing products: leads, attribution and ad-platform audiences."""

import re

import pandas as pd

from dagmesh import Column, Domain, Landing, ProductContext, pii
from dagmesh.orchestration.automation import on_cron, when_upstream_changes

# Leads are ingested here; attribution and audiences are built by the dbt
# project dbt_projects/marketing; the reverse ETL below sends the audiences.
marketing = Domain(
    "marketing",
    owner="growth",
    description="CRM leads, attribution and ad audiences.",
    dbt_project="dbt_projects/marketing",
)

marketing.sql_product(
    "crm_leads",
    classification="internal",
    refresh=on_cron("0 * * * *"),  # new landing files, hourly
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
                "invalid created_at": "try_utc_timestamp(created_at) IS NULL",
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
        select distinct
            lead_id,
            lower(trim(email)) as email,
            case regexp_replace(lower(trim(channel)), '[^a-z]', '', 'g')
                when 'organic' then 'organic'
                when 'both' then 'both'
                else 'lead_generation'
            end as channel,
            lower(trim(ad_platform)) as ad_platform,
            utc_timestamp(created_at) as created_at,
            nullif(trim(customer_id), '') as customer_id
        from leads
    """,
)


# The platforms an uploader takes files for; the outbox folder is named after
# one of these, never after a value read from the data.
AD_PLATFORMS = ("google", "linkedin", "meta")
AUDIENCE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@marketing.python_product(
    classification="internal",
    refresh=when_upstream_changes(),
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
        """
        select
            ad_platform,
            audience,
            count(*) as members
        from ad_audiences
        group by all
        order by all
        """
    ).fetchall()
    sent, skipped = [], 0
    for platform, audience, members in audiences:
        # File names come from data: only a known platform and a plain audience name.
        if platform not in AD_PLATFORMS or not AUDIENCE_NAME.fullmatch(audience or ""):
            skipped += 1
            continue
        emails = ctx.sql(
            """
            select email_sha256
            from ad_audiences
            where ad_platform = $platform and audience = $audience
            order by email_sha256
            """,
            params={"platform": platform, "audience": audience},
        )
        file = ctx.send_to_outbox(emails, f"{platform}/{audience}.csv")
        sent.append((platform, audience, members, str(file)))
    ctx.log.info(f"sent {len(sent)} audience files to {ctx.outbox}")
    if skipped:
        ctx.log.warning(
            f"{ctx.product.ref}: {skipped} audience(s) not sent: unknown ad platform (known: "
            f"{', '.join(AD_PLATFORMS)}) or an audience name that is not a plain identifier"
        )
    return pd.DataFrame(sent, columns=["ad_platform", "audience", "members", "file"]).astype(
        {"members": "int64"}
    )
