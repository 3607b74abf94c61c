"""``fleet learning …``, ``fleet acl …``, ``fleet cache …`` and ``fleet flags``: the learning state,
the Redis users that guard it, the result cache and the feature flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fleet import config
from fleet.output import echo_json


def _say(text: str) -> None:
    click.echo(text, err=True)


def _store_and_cfg():
    from fleet.sona.settings import LearningSettings
    from fleet.sona.wiring import learning_store
    from fleet.store import connect

    settings = config.load()
    connect(settings["redis"]["url"], settings["redis"]["connect_timeout"])  # FleetUnreachable with a hint
    return learning_store(settings), LearningSettings.from_settings(settings)


@click.group()
def learning() -> None:
    """The fleet's learned policy: versions, consolidation, export/import, reset."""


def _print_status(doc: dict[str, Any]) -> None:
    click.echo(f"learning {'on' if doc['enabled'] else 'off (frozen policy)'}; published version {doc['version']}; "
               f"{len(doc['agents'])} agent(s) with state; {doc['patterns']} shared pattern(s)")
    click.echo(f"jobs learned since the last consolidation: {doc['learned_since_consolidation']} "
               f"(consolidates at {doc['consolidate_after_jobs']} or on schedule)")
    last = doc["last_consolidation"]
    if last:
        click.echo(f"last consolidation: {last.get('samples', 0)} samples from {last.get('agents', 0)} agent(s), "
                   f"loss {last.get('loss_before')} → {last.get('loss_after')}, SVD residual {last.get('svd_residual')}")
    for arm, st in doc["arms"].items():
        click.echo(f"  {arm:32} jobs {st['jobs']:5}  mean reward {st['mean_reward']:.3f}")


@learning.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def status_cmd(as_json: bool) -> None:
    """Versions, jobs since consolidation, per-arm statistics and the pattern count.

    \b
    Example:
      fleet learning status --json
    """
    from fleet.sona import admin

    store, cfg = _store_and_cfg()
    doc = admin.status(store, cfg)
    echo_json(doc) if as_json else _print_status(doc)


@learning.command("consolidate")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def consolidate_cmd(as_json: bool) -> None:
    """Consolidate now, in this process (waits for no worker; refuses while another runs).

    \b
    Example:
      fleet learning consolidate
    """
    from fleet.sona.publisher import consolidate_fleet

    store, cfg = _store_and_cfg()
    report = consolidate_fleet(store, cfg)
    if as_json:
        echo_json(report)
    elif not report["ran"]:
        _say(f"not run: {report['why']}")
    else:
        click.echo(f"published version {report['version']}: {report['samples']} samples, "
                   f"{report['agents_merged']} MicroLoRA(s) merged, {report['patterns']} pattern(s), "
                   f"{report['seconds']}s")


@learning.command("export")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def export_cmd(path: Path) -> None:
    """Write the published BaseLoRA and shared patterns to PATH (versioned msgpack).

    \b
    Example:
      fleet learning export learned.fleet
    """
    from fleet.sona import admin

    store, cfg = _store_and_cfg()
    out = admin.export(store, cfg, path)
    click.echo(f"wrote {out['path']}: version {out['learning_version']}, {out['patterns']} pattern(s)")


@learning.command("import")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def import_cmd(path: Path) -> None:
    """Publish an exported BaseLoRA and patterns as the next version.

    \b
    Example:
      fleet learning import learned.fleet
    """
    from fleet.sona import admin

    store, cfg = _store_and_cfg()
    out = admin.import_file(store, cfg, path)
    click.echo(f"published version {out['learning_version']} with {out['patterns']} pattern(s)")


@learning.command("reset")
@click.option("--agent", "agent_id", help="Reset only this agent's MicroLoRA and experience.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset_cmd(agent_id: str | None, yes: bool) -> None:
    """Forget learned state: one agent's, or the whole fleet's (versions, patterns, experience).

    \b
    Example:
      fleet learning reset --agent agent-2 --yes
    """
    from fleet.sona import admin

    what = f"agent {agent_id}'s learning state" if agent_id else "all learning state of the fleet"
    if not yes:
        click.confirm(f"Delete {what}?", abort=True)
    store, _ = _store_and_cfg()
    click.echo(f"deleted {admin.reset(store, agent_id)} key(s) ({what})")


@click.group()
def acl() -> None:
    """Redis ACL users for the agents' namespaces and for consolidation."""


@acl.command("apply")
@click.option("--agents", "count", type=click.IntRange(1, 1024), help="Create users agent-1 … agent-N (default local.agents).")
@click.option("--agent", "names", multiple=True, help="An agent id to create a user for (repeatable).")
def acl_apply(count: int | None, names: tuple[str, ...]) -> None:
    """Create or update the ACL users (passwords kept in acl.secrets_file, mode 0600).

    Connects with redis.url (an admin connection).

    \b
    Example:
      fleet acl apply --agents 4
    """
    from fleet.acl import apply_from_settings
    from fleet.store import connect

    settings = config.load()
    agents = list(names) or [f"agent-{k}" for k in range(1, (count or settings["local"]["agents"]) + 1)]
    admin = connect(settings["redis"]["url"], settings["redis"]["connect_timeout"])
    users = apply_from_settings(admin, settings, agents)
    click.echo(f"applied {len(users)} user(s): {', '.join(users)}")


@click.group()
def cache() -> None:
    """The result cache: repeated jobs answered without touching the model."""


def _cache():
    from fleet.cache import CacheSettings, ResultCache
    from fleet.sona.store import binary_client
    from fleet.store import connect

    settings = config.load()
    connect(settings["redis"]["url"], settings["redis"]["connect_timeout"])  # FleetUnreachable with a hint
    client = binary_client(settings["redis"]["url"], settings["redis"]["connect_timeout"])
    return ResultCache(client, settings.prefix, CacheSettings.from_settings(settings))


@cache.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def cache_stats(as_json: bool) -> None:
    """Hits, misses, corrupt entries found, hit ratio, entries and bytes.

    \b
    Example:
      fleet cache stats --json
    """
    doc = _cache().stats()
    if as_json:
        echo_json(doc)
        return
    click.echo(f"entries {doc['entries']} ({doc['bytes']} bytes); hits {doc['hits']}, misses {doc['misses']}, "
               f"corrupt {doc['errors']}; hit ratio {doc['hit_ratio']:.1%}")


@cache.command("clear")
@click.option("--target", help="Only the entries of this module (dotted name), e.g. shapes.intervals.")
def cache_clear(target: str | None) -> None:
    """Delete cached results: of one target, or all of them (and the counters).

    \b
    Example:
      fleet cache clear --target shapes.intervals
    """
    click.echo(f"deleted {_cache().clear(target)} cached result(s)")


@click.command("flags")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def flags_cmd(as_json: bool) -> None:
    """The feature flags in force, and where each value came from.

    Agents read them at the start of every job: change them in the FLEET_CONFIG file (no restart)
    or with the listed environment variable (restart the agents).

    \b
    Example:
      FLEET_ENGINE_TRM_ENABLED=0 fleet flags
    """
    from fleet.flags import describe

    rows = describe(config.load())
    if as_json:
        echo_json({"flags": rows})
        return
    for r in rows:
        click.echo(f"{r['flag']:16} {str(r['value']):16} from {r['source']:28} (setting {r['setting']}, env {r['env']})")


@click.command("costs")
@click.option("--hours", type=click.FloatRange(min=0.01), default=24.0, show_default=True,
              help="Period to sum over, ending now.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def costs_cmd(hours: float, as_json: bool) -> None:
    """The fleet's spend per provider and the savings against sending every job to the cloud.

    The counterfactual prices each job's real token counts at the remote rates ([prices]).
    Savings below 50% over a day is the alert the seed design asks for.

    \b
    Example:
      fleet costs --hours 24 --json
    """
    import time

    from fleet.costs import PriceTable, summarise
    from fleet.store import Keys, connect, read_usage

    settings = config.load()
    client = connect(settings["redis"]["url"], settings["redis"]["connect_timeout"])
    doc = {"hours": hours, **summarise(PriceTable.from_settings(settings),
                                       read_usage(client, Keys(settings.prefix), time.time() - hours * 3600))}
    if as_json:
        echo_json(doc)
        return
    spend = ", ".join(f"{k} {v:.4f}" for k, v in doc["spend"].items()) or "nothing"
    savings = "n/a (no tokens)" if doc["savings"] is None else f"{doc['savings']:.1%}"
    click.echo(f"last {hours:g} h: spend {doc['total']:.4f} ({spend}); cloud-only would cost {doc['cloud_only']:.4f}; "
               f"savings {savings}; tokens {doc['tokens']['prompt']} in / {doc['tokens']['completion']} out")
