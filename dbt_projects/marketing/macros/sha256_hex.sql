{#- The SHA-256 of a text expression as 64 lower-case hex digits, the same
    on every warehouse the platform builds on: DuckDB's sha256() takes and
    returns text, PostgreSQL's takes and returns bytea. -#}
{% macro sha256_hex(expression) -%}
    {{ return(adapter.dispatch('sha256_hex', 'marketing')(expression)) }}
{%- endmacro %}

{% macro default__sha256_hex(expression) -%}
    sha256({{ expression }})
{%- endmacro %}

{% macro postgres__sha256_hex(expression) -%}
    encode(sha256(convert_to({{ expression }}, 'UTF8')), 'hex')
{%- endmacro %}
