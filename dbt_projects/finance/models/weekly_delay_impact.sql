select
    week,
    cause,
    count(*) as delayed_orders,
    avg(delay_days)::double as avg_delay_days,
    sum(revenue_at_risk)::decimal(18, 2) as revenue_at_risk,
    sum(refunded)::decimal(18, 2) as refunded,
    (sum(refunded) / nullif(sum(revenue_at_risk), 0))::double as refund_rate
from {{ ref('delay_costs') }}
group by week, cause
order by week, cause
