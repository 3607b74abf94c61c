"""Operator views and actions on the learning state: status, export, import, reset.

Export file format (msgpack, versioned; what `fleet learning export` writes):

    {"format": "fleet-learning", "version": 1, "exported_at": <unix seconds>,
     "learning_version": N, "arms": [arm names],
     "base": <bytes: a fleet.sona.store.Base blob>, "patterns": <bytes: a fleet.sona.patterns blob>}

Import checks both blobs decode and that the arms match this fleet's configuration, then publishes
them as the next version (write, then swap the pointer), so agents pick them up before their next
job. Nothing else is imported (agents' MicroLoRAs and experience stay per fleet).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgpack

from fleet.errors import BadInput
from fleet.output import write_atomic
from fleet.sona import codec, patterns as pat
from fleet.sona.publisher import current_base
from fleet.sona.settings import LearningSettings
from fleet.sona.store import Base, SonaStore

EXPORT_FORMAT, EXPORT_VERSION = "fleet-learning", 1
MAX_EXPORT = 64 << 20


def arm_stats(store: SonaStore) -> dict[str, dict[str, float]]:
    """Per strategy, over every agent's experience log: jobs, mean reward."""
    sums: dict[str, list[float]] = defaultdict(list)
    for agent_id in store.agents():
        for _, fields in store.experience(agent_id, "0", 100000):
            sums[fields["strategy"].decode()].append(float(fields["reward"]))
    return {arm: {"jobs": len(rs), "mean_reward": round(sum(rs) / len(rs), 4)} for arm, rs in sorted(sums.items())}


def status(store: SonaStore, cfg: LearningSettings) -> dict[str, Any]:
    version, ref = store.current()
    base = store.load_base(ref)
    blob = store.load_patterns_blob(ref)
    return {"enabled": cfg.enabled, "version": version, "agents": store.agents(),
            "learned_since_consolidation": store.pending_jobs(), "consolidate_after_jobs": cfg.consolidate_after_jobs,
            "last_consolidation": base.report if base else None, "patterns": len(pat.loads(blob)) if blob else 0,
            "arms": arm_stats(store)}


def export(store: SonaStore, cfg: LearningSettings, path: Path) -> dict[str, Any]:
    """Write the published version (or version 0 from the seed) to ``path``; returns a summary."""
    base = current_base(store, cfg)
    patterns = store.load_patterns_blob(store.current()[1]) or pat.dumps([])
    doc = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "exported_at": time.time(),
           "learning_version": base.version, "arms": base.arms, "base": base.blob(), "patterns": patterns}
    write_atomic(path, msgpack.packb(doc, use_bin_type=True))
    return {"path": str(path), "learning_version": base.version, "patterns": len(pat.loads(patterns))}


def _read_export(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    if len(data) > MAX_EXPORT:
        raise BadInput(f"{path} is larger than {MAX_EXPORT >> 20} MiB; not a learning export")
    try:
        doc = msgpack.unpackb(data, raw=False, max_bin_len=MAX_EXPORT, max_str_len=1 << 16, max_array_len=1 << 12,
                              max_map_len=64)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise BadInput(f"{path} is not a learning export (msgpack: {exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT or doc.get("version") != EXPORT_VERSION:
        raise BadInput(f"{path} is not a {EXPORT_FORMAT} file of version {EXPORT_VERSION}")
    return doc


def import_file(store: SonaStore, cfg: LearningSettings, path: Path) -> dict[str, Any]:
    """Publish the export at ``path`` as the next version (module docstring); BadInput if it does
    not decode or was made for other arms."""
    doc = _read_export(path)
    try:
        base = Base.from_blob(doc["base"])
        patterns = pat.loads(doc["patterns"])
    except (codec.CorruptState, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: the learning state inside does not decode: {exc}") from exc
    here = current_base(store, cfg)
    if base.arms != here.arms or base.w0.shape != here.w0.shape:
        raise BadInput(f"{path} was exported for arms {base.arms} (d={base.w0.shape[1]}); this fleet has "
                       f"{here.arms} (d={here.w0.shape[1]}); align [learning] prompt_styles/temperatures/feature_dim")
    base.version, base.cursors = here.version + 1, here.cursors
    base.report = {**base.report, "imported_from": str(path), "imported_version": doc.get("learning_version")}
    store.publish(base, pat.dumps(patterns))
    return {"learning_version": base.version, "patterns": len(patterns)}


def reset(store: SonaStore, agent_id: str | None = None) -> int:
    """Delete learning state: one agent's (MicroLoRA, applied ids, experience) or, without an
    agent, every agent's and the shared versions, patterns and pointer. Returns keys deleted."""
    agents = [agent_id] if agent_id else store.agents()
    keys = [store.keys.agent(a, "sona", part) for a in agents for part in ("micro", "applied", "experience")]
    if agent_id is None:
        keys += [k for k in store.client.scan_iter(store.keys.shared("sona", "*"), count=500)]
    return int(store.client.delete(*keys)) if keys else 0
