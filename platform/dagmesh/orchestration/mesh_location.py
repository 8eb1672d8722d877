"""The platform's own code location, ``mesh``: cross-domain materializations
as Dagster runs.

Dagster runs one code location per run, and in 1.13 an asset backfill cannot
span code locations for unpartitioned assets: it puts every ready asset into
one run request for the code location of the first one
(``build_run_requests_with_backfill_policies``, then
``get_job_execution_data_from_run_request``). So a cross-domain
materialization is itself a run: job ``materialize_products`` of location
``mesh``, launched from the UI's launchpad (config: the products and
``with_upstream``) or by ``dagmesh materialize``. Its one op resolves the
selection against the workspace's asset graph and launches one run per
domain through the instance's run coordinator, in dependency order
(:func:`dagmesh.orchestration.runner.materialize`), each tagged
``dagmesh/materialization=<this run's id>``. Because it is a run, it is
launched by the instance's run launcher (queued first under the
QueuedRunCoordinator), it outlives whoever asked for it, the UI shows it
(its logs list each domain's run) and terminating it cancels its runs.
"""

# No `from __future__ import annotations`: Dagster reads the op's config
# class from its real annotation.
import json

import dagster as dg
from dagster import DagsterRunStatus

from dagmesh import config as settings
from dagmesh.orchestration.runner import MaterializeError, Outcome, cancel_runs, materialize

JOB_NAME = settings.MESH_JOB
OP_NAME = settings.MESH_OP
# What the materialization resolved to (``domain/product`` list, JSON), set
# on the run as soon as it is known: the CLI's progress reads it.
SELECTED_TAG = "dagmesh/selected"
STOPPING = (DagsterRunStatus.CANCELING, DagsterRunStatus.CANCELED)


class MaterializeRequest(dg.Config):
    """The launchpad's config: which products, and whether with their upstream."""

    products: list[str] = []
    with_upstream: bool = True
    all_products: bool = False


def _runs_markdown(runs: list[tuple[str, str, list[str]]], instance: dg.DagsterInstance) -> str:
    lines = ["| run | domain | status | products |", "|---|---|---|---|"]
    for run_id, domain, products in runs:
        run = instance.get_run_by_id(run_id)
        status = run.status.value if run else "?"
        lines.append(
            f"| [{run_id[:8]}](/runs/{run_id}) | {domain} | {status} | {', '.join(products)} |"
        )
    return "\n".join(lines)


def outcome_metadata(outcome: Outcome) -> dict[str, dg.MetadataValue]:
    """What a finished materialization reports (the CLI reads it back)."""
    return {
        "outcome": dg.MetadataValue.json(
            {
                "selected": outcome.selected,
                "materialized": outcome.materialized,
                "failures": [
                    {"product": f.product, "run_id": f.run_id, "message": f.message}
                    for f in outcome.failures
                ],
                "not_run": outcome.not_run,
                "load_errors": outcome.load_errors,
                "run_ids": outcome.run_ids,
                "cancelled": outcome.cancelled,
            }
        )
    }


def _requested(config: MaterializeRequest) -> list[str]:
    """The products the request names ([] for all of them); a Failure when it
    names none or both."""
    if not config.products and not config.all_products:
        raise dg.Failure(
            "name products (DOMAIN/PRODUCT) in `products`, or set `all_products: true`",
            metadata={"error": "request"},
        )
    if config.products and config.all_products:
        raise dg.Failure(
            "give either `products` or `all_products: true`, not both",
            metadata={"error": "request"},
        )
    return [] if config.all_products else list(config.products)


@dg.op(name=OP_NAME, out=dg.Out(dg.Nothing))
def materialize_across_domains(context: dg.OpExecutionContext, config: MaterializeRequest):
    """Materialize the requested products (with their upstream across
    domains), one run per domain, and follow them to the end."""
    refs = _requested(config)
    instance, run_id = context.instance, context.run_id
    launched: list[tuple[str, str, list[str]]] = []

    def on_launch(child: str, domain: str, products: list[str]) -> None:
        launched.append((child, domain, products))
        context.log.info(f"launched run {child} of domain {domain}: {', '.join(products)}")

    seen: set[str] = set()

    def on_progress(done: list[str], failed: list[str], total: int) -> None:
        for ref in sorted(set(done) - seen):
            context.log.info(f"materialized {ref} ({len(done)}/{total})")
        for ref in sorted(set(failed) - seen):
            context.log.warning(f"not materialized: {ref}")
        seen.update(done, failed)

    def should_stop() -> bool:
        return instance.get_run_by_id(run_id).status in STOPPING

    try:
        outcome = materialize(
            refs,
            with_upstream=config.with_upstream,
            on_progress=on_progress,
            on_notice=context.log.warning,
            materialization_id=run_id,
            on_launch=on_launch,
            should_stop=should_stop,
            on_selected=lambda selected: instance.add_run_tags(
                run_id, {SELECTED_TAG: json.dumps(selected)}
            ),
        )
    except MaterializeError as error:
        raise dg.Failure(str(error), metadata={"error": "request"}) from None
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
        # Terminated from the UI or `dagmesh cancel`: no run of ours goes on.
        cancel_runs(instance, [child for child, _, _ in launched])
        raise
    metadata = {
        **outcome_metadata(outcome),
        "runs": dg.MetadataValue.md(_runs_markdown(launched, instance)),
    }
    if outcome.cancelled is not None:
        context.log.warning(f"cancelled; runs cancelled: {outcome.cancelled}")
        raise dg.Failure("the materialization was cancelled", metadata=metadata)
    if not outcome.success:
        raise dg.Failure(_failure_text(outcome), metadata=metadata)
    context.add_output_metadata(metadata)
    context.log.info(f"materialized {len(outcome.materialized)} products")


def _failure_text(outcome: Outcome) -> str:
    lines = [f"{location}: failed to load" for location in outcome.load_errors]
    lines += [f"{f.product} failed in run {f.run_id}: {f.message}" for f in outcome.failures]
    if outcome.not_run:
        lines.append(f"not run (upstream failed): {', '.join(outcome.not_run)}")
    return "\n".join(lines) or "not every selected product was materialized"


@dg.job(
    name=JOB_NAME,
    executor_def=dg.in_process_executor,
    description=(
        "Materialize products with their upstream across domains: one run per domain, "
        "launched through the run coordinator in dependency order and tagged "
        "dagmesh/materialization=<this run's id>. Terminate this run to cancel them all."
    ),
    tags={"dagmesh/kind": "cross-domain-materialization"},
)
def materialize_products() -> None:
    """One cross-domain materialization."""
    materialize_across_domains()


defs = dg.Definitions(jobs=[materialize_products])
