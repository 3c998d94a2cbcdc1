"""``lambdalab lab …``: the lab's commands (views, drift between the two codebases)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lambdalab.cliutil import console, friendly
from lambdalab.settings import get_settings

lab_app = typer.Typer(
    help="The lab: views, the two-codebase drift check, Kappa replay.", no_args_is_help=True
)


@lab_app.command("views")
@friendly
def views_cmd() -> None:
    """List the registered views (one definition each, compiled for both layers)."""
    from views.registry import all_views

    table = Table(title="views")
    for col in ("view", "stream", "keys", "bucket", "measures", "fingerprint"):
        table.add_column(col)
    for v in all_views().values():
        measures = ", ".join(f"{m.name}={m.kind}({m.field or ''})" for m in v.measures)
        table.add_row(v.name, v.stream, ",".join(v.keys), f"{v.bucket_s}s", measures, v.fingerprint)
    console.print(table)


@lab_app.command("drift")
@friendly
def drift_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Compare the hand-written batch and speed copies over the whole master dataset."""
    from lab.drift import check

    with console.status("running both hand-written copies over the master dataset…"):
        report = check(get_settings())
    if as_json:
        console.print_json(json.dumps(report.__dict__))
    else:
        console.print(
            f"files {report.files}, records {report.records}, cells speed "
            f"{report.cells_speed} / batch {report.cells_batch}"
        )
        for diff in report.differences[:20]:
            console.print(diff)
        console.print("[red]DRIFT[/]" if report.drifted else "[green]no drift[/]")
    if report.drifted:
        raise typer.Exit(1)


@lab_app.command("kappa")
@friendly
def kappa_cmd(
    view: Annotated[str, typer.Option(help="the view to replay")] = "pageviews_by_url_hourly",
) -> None:
    """Replay the log through the streaming code and compare with the Lambda answers."""
    from lab.kappa import compare
    from views.registry import get_view

    with console.status("replaying the log from offset 0…"):
        report = compare(get_settings(), get_view(view))
    console.print(
        f"{report.view}: replayed {report.records} records in {report.replay_s:.2f}s; "
        f"{report.cells} cells compared with the Lambda answers in {report.lambda_s:.2f}s"
    )
    for diff in report.mismatches[:20]:
        console.print(diff)
    console.print("[red]MISMATCH[/]" if report.mismatches else "[green]Kappa == Lambda[/]")
    if report.mismatches:
        raise typer.Exit(1)


@lab_app.command("verify")
@friendly
def verify_cmd(
    view: Annotated[str, typer.Argument(help="the view whose served answers to check")],
) -> None:
    """Check the served answers against the CODED definition, replayed over the whole log."""
    from lab.kappa import compare
    from views.registry import coded_views, get_view

    served = get_view(view)  # an unknown name says which views exist
    with console.status("replaying the log with the coded definition…"):
        report = compare(get_settings(), coded_views()[view], served=served)
    if report.mismatches:
        console.print(
            f"{view}: answers differ from the coded definition in {len(report.mismatches)} "
            f"of {report.cells} cells, e.g. {report.mismatches[0]}"
        )
        raise typer.Exit(1)
    console.print(f"{view}: answers equal the coded definition ({report.cells} cells)")


@lab_app.command("replay")
@friendly
def replay_cmd(
    view: Annotated[str, typer.Argument(help="the view to recompute by replay")],
    follow: Annotated[
        bool, typer.Option("--follow/--once", help="keep the replay running as the live job")
    ] = False,
    back: Annotated[
        bool, typer.Option("--back", help="switch back to batch ⊕ realtime and drop the replay")
    ] = False,
    grace_s: Annotated[float, typer.Option(help="how long the old output stays")] = 5.0,
) -> None:
    """Kappa: replay the log into a new output, switch serving to it in one step."""
    import threading

    from lab.kappa import back_to_lambda, replay_and_switch

    settings = get_settings()
    if back:
        dropped = back_to_lambda(settings, view, grace_s)
        console.print(
            f"{view}: served by batch ⊕ realtime again"
            + (f"; dropped {dropped}" if dropped else " (it was)")
        )
        return

    def switched(report: Any) -> None:
        console.print(
            f"{view}: replayed {report.records} records into {report.output} in "
            f"{report.caught_up_s:.2f}s; serving switched to {report.output}"
            + (f" (was {report.previous})" if report.previous else " (was batch ⊕ realtime)")
        )

    # --follow: consume until interrupted (Ctrl-C ends it; the consumer is closed)
    stop = threading.Event() if follow else None
    with console.status(f"replaying {view} from offset 0…"):
        report = replay_and_switch(settings, view, grace_s=grace_s, follow=stop, on_switch=switched)
    if report.dropped:
        console.print(f"dropped the previous output {', '.join(report.dropped)}")


@lab_app.command("deploy")
@friendly
def deploy_cmd(
    view: Annotated[str, typer.Argument(help="the view to deploy a version of")],
    buggy: Annotated[
        bool, typer.Option("--buggy/--fixed", help="the lab's buggy version, or the coded one")
    ] = True,
) -> None:
    """Deploy the lab's buggy version of a view (a min computed as max), or take it back out."""
    from lab.baddeploy import deploy_buggy, fix
    from views.registry import deployed_dir

    if buggy:
        bad = deploy_buggy(view)
        broken = ", ".join(f"{m.name}={m.kind}({m.field or ''})" for m in bad.measures)
        console.print(f"deployed a BUGGY {view} (fingerprint {bad.fingerprint}): {broken}")
    else:
        took = fix(view)
        console.print(
            f"{view}: {'the coded definition serves again' if took else 'nothing deployed'}"
        )
    console.print(
        f"deployed definitions: {deployed_dir()}. The API uses it from its next request, the "
        "next batch cycle builds a new version with it; restart the speed consumer "
        "so it rebuilds its windows: under `make demo`, `.venv/bin/supervisorctl -c "
        ".lambdalab/conf/supervisord.conf restart speed-pageviews`."
    )


@lab_app.command("report")
@friendly
def report_cmd(
    sizes: Annotated[
        str, typer.Option(help="history sizes in events, comma-separated (at least three)")
    ] = "20000,40000,80000",
    probes: Annotated[int, typer.Option(min=10, help="freshness probes")] = 200,
    out: Annotated[Path, typer.Option(help="where report.md and its plot go")] = Path("docs/lab"),
) -> None:
    """Measure the tradeoff on this machine; write docs/lab/report.md and its plot."""
    from lab.report import render, run, write

    report = run(
        get_settings(),
        [int(n) for n in sizes.split(",") if n.strip()],
        probes,
        progress=console.print,
    )
    path = write(report, out)
    console.print(render(report))
    console.print(f"written to {path}")


def register(app: typer.Typer) -> None:
    """Add the ``lab`` commands to the ``lambdalab`` CLI (called by ``lambdalab.cli``)."""
    app.add_typer(lab_app, name="lab")
