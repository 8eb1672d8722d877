with customer_orders as (
    select
        o.customer_id,
        min(o.ordered_at) as first_order_at,
        count(distinct o.order_id) as orders,
        sum(i.line_amount) as revenue
    from {{ source('sales', 'orders') }} as o
    inner join {{ source('sales', 'order_items') }} as i using (order_id)
    where o.status <> 'cancelled'
    group by o.customer_id
)

select
    l.lead_id,
    l.customer_id,
    l.channel,
    l.ad_platform,
    c.customer_id is not null as converted,
    c.first_order_at,
    coalesce(c.orders, 0)::bigint as orders,
    coalesce(c.revenue, 0)::decimal(18, 2) as revenue
from {{ source('marketing', 'crm_leads') }} as l
left join customer_orders as c using (customer_id)
