with order_value as (
    select order_id, sum(line_amount) as value
    from {{ source('sales', 'order_items') }}
    group by order_id
),

late_refunds as (
    select order_id, sum(amount) as refunded
    from {{ source('finance', 'refunds') }}
    where reason = 'late_delivery'
    group by order_id
)

select
    d.order_id,
    date_trunc('week', d.promised_delivery_date)::date as week,
    d.cause,
    d.delay_days::integer as delay_days,
    coalesce(v.value, 0)::decimal(18, 2) as revenue_at_risk,
    coalesce(r.refunded, 0)::decimal(18, 2) as refunded
from {{ source('shipping', 'shipping_delays') }} as d
left join order_value as v using (order_id)
left join late_refunds as r using (order_id)
where d.is_delayed
