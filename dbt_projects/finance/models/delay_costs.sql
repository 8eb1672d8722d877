with

shipping_delays as (
    select * from {{ source('shipping', 'shipping_delays') }}
),

order_items as (
    select * from {{ source('sales', 'order_items') }}
),

refunds as (
    select * from {{ source('finance', 'refunds') }}
),

order_totals as (
    select
        order_id,
        sum(line_amount) as order_total
    from order_items
    group by order_id
),

late_refunds as (
    select
        order_id,
        sum(amount) as refunded
    from refunds
    where reason = 'late_delivery'
    group by order_id
),

final as (
    select
        shipping_delays.order_id,
        date_trunc('week', shipping_delays.promised_delivery_date)::date as week,
        shipping_delays.cause,
        shipping_delays.delay_days::integer as delay_days,
        coalesce(order_totals.order_total, 0)::decimal(18, 2) as revenue_at_risk,
        coalesce(late_refunds.refunded, 0)::decimal(18, 2) as refunded
    from shipping_delays
    left join order_totals
        on shipping_delays.order_id = order_totals.order_id
    left join late_refunds
        on shipping_delays.order_id = late_refunds.order_id
    where shipping_delays.is_delayed
)

select * from final
