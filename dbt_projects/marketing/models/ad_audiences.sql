{#- Members are identified by the SHA-256 of their normalised email, as the
    ad platforms expect; raw emails never leave the domain. -#}
with members as (
    select l.ad_platform, l.lead_id, l.email, a.converted, l.customer_id
    from {{ source('marketing', 'crm_leads') }} as l
    inner join {{ ref('lead_attribution') }} as a using (lead_id)
    where l.ad_platform is not null and l.email is not null
),

delayed as (
    select distinct customer_id
    from {{ source('shipping', 'shipping_delays') }}
    where is_delayed
)

select ad_platform, 'converted_customers' as audience, sha256(email) as email_sha256, lead_id
from members
where converted
union all
select ad_platform, 'open_leads', sha256(email), lead_id
from members
where not converted
union all
select m.ad_platform, 'delayed_customers', sha256(m.email), m.lead_id
from members as m
inner join delayed as d using (customer_id)
