"""Errors the fleet raises on purpose, each with the CLI exit code it maps to.

Exit codes: 0 success, 1 job failed, 2 bad input or usage, 3 fleet unreachable or timeout.
"""

from __future__ import annotations


class FleetError(Exception):
    """Base of every deliberate error; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class BadInput(FleetError):
    """The user's target, options or job are invalid; nothing was sent."""

    exit_code = 2


class ConfigError(FleetError):
    """A configuration file or FLEET_* variable is invalid."""

    exit_code = 2


class FleetUnreachable(FleetError):
    """Redis (or the agents behind it) could not be reached in time."""

    exit_code = 3


class JobTimeout(FleetError):
    """The job did not finish within the wait timeout; it keeps running in the fleet."""

    exit_code = 3


class JobFailed(FleetError):
    """The fleet ran the job and it failed."""

    exit_code = 1


class ModelError(FleetError):
    """A model file is missing, incomplete, or fails its checksum."""

    exit_code = 2
