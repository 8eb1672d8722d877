with

crm_leads as (
    select * from {{ source('marketing', 'crm_leads') }}
),

orders as (
    select * from {{ source('sales', 'orders') }}
),

order_items as (
    select * from {{ source('sales', 'order_items') }}
),

customer_orders as (
    select
        orders.customer_id,
        min(orders.ordered_at) as first_order_at,
        count(distinct orders.order_id) as orders,
        sum(order_items.line_amount) as revenue
    from orders
    inner join order_items
        on orders.order_id = order_items.order_id
    where orders.status <> 'cancelled'
    group by orders.customer_id
),

final as (
    select
        crm_leads.lead_id,
        crm_leads.customer_id,
        crm_leads.channel,
        crm_leads.ad_platform,
        customer_orders.customer_id is not null as converted,
        customer_orders.first_order_at,
        coalesce(customer_orders.orders, 0)::bigint as orders,
        coalesce(customer_orders.revenue, 0)::decimal(18, 2) as revenue
    from crm_leads
    left join customer_orders
        on crm_leads.customer_id = customer_orders.customer_id
)

select * from final
