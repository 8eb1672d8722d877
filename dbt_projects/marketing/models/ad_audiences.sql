{#- Members are identified by the SHA-256 of their normalised email, as the
    ad platforms expect; raw emails never leave the domain. -#}
with

crm_leads as (
    select * from {{ source('marketing', 'crm_leads') }}
),

lead_attribution as (
    select * from {{ ref('lead_attribution') }}
),

shipping_delays as (
    select * from {{ source('shipping', 'shipping_delays') }}
),

members as (
    select
        crm_leads.ad_platform,
        crm_leads.lead_id,
        crm_leads.email,
        lead_attribution.converted,
        crm_leads.customer_id
    from crm_leads
    inner join lead_attribution
        on crm_leads.lead_id = lead_attribution.lead_id
    where
        crm_leads.ad_platform is not null
        and crm_leads.email is not null
),

customers_with_delays as (
    select distinct customer_id
    from shipping_delays
    where is_delayed
),

converted_customers as (
    select
        ad_platform,
        'converted_customers' as audience,
        {{ sha256_hex('email') }} as email_sha256,
        lead_id
    from members
    where converted
),

open_leads as (
    select
        ad_platform,
        'open_leads' as audience,
        {{ sha256_hex('email') }} as email_sha256,
        lead_id
    from members
    where not converted
),

delayed_customers as (
    select
        members.ad_platform,
        'delayed_customers' as audience,
        {{ sha256_hex('members.email') }} as email_sha256,
        members.lead_id
    from members
    inner join customers_with_delays
        on members.customer_id = customers_with_delays.customer_id
),

final as (
    select * from converted_customers
    union all
    select * from open_leads
    union all
    select * from delayed_customers
)

select * from final
