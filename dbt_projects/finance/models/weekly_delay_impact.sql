with

delay_costs as (
    select * from {{ ref('delay_costs') }}
),

final as (
    select
        week,
        cause,
        count(*) as delayed_orders,
        avg(delay_days)::double precision as avg_delay_days,
        sum(revenue_at_risk)::decimal(18, 2) as revenue_at_risk,
        sum(refunded)::decimal(18, 2) as refunded,
        (sum(refunded) / nullif(sum(revenue_at_risk), 0))::double precision as refund_rate
    from delay_costs
    group by week, cause
)

select * from final
order by week, cause
