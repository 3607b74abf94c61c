"""Feature flags (the rollback switches), read from the settings at the start of every job, so a
changed overlay file (``FLEET_CONFIG``) takes effect without restarting the agents.

    flag              setting               off / values
    trm.enabled       engine.trm_enabled    off → one generation pass (one iteration, one prompt)
    sona.enabled      learning.enabled      off → frozen policy: greedy arm, no updates
    cache.enabled     cache.enabled         off → every job runs, nothing is cached
    router.strategy   router.strategy       cost-optimized | quality-first | local-only | cloud-only
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleet import config
from fleet.config import Settings, env_name

FLAGS = {
    "trm.enabled": "engine.trm_enabled",
    "sona.enabled": "learning.enabled",
    "cache.enabled": "cache.enabled",
    "router.strategy": "router.strategy",
}


@dataclass(frozen=True)
class Flags:
    trm: bool = True
    sona: bool = True
    cache: bool = True
    strategy: str = "cost-optimized"

    @classmethod
    def from_settings(cls, settings: Settings) -> "Flags":
        get = settings.get
        return cls(trm=get(FLAGS["trm.enabled"]), sona=get(FLAGS["sona.enabled"]),
                   cache=get(FLAGS["cache.enabled"]), strategy=get(FLAGS["router.strategy"]))

    @classmethod
    def now(cls) -> "Flags":
        """The flags in force now (config files and environment read again)."""
        return cls.from_settings(config.load())


def describe(settings: Settings) -> list[dict[str, Any]]:
    """Each flag: its setting, value, where the value came from, and the variable that overrides it."""
    out = []
    for flag, key in FLAGS.items():
        section, name = key.split(".", 1)
        out.append({"flag": flag, "setting": key, "value": settings.get(key), "source": settings.sources[key],
                    "env": env_name(section, name)})
    return out
