"""The Celery app of the fleet (``celery -A workers.app …``)."""

from __future__ import annotations

from celery import Celery

from fleet import config
from fleet.celeryconf import celery_config
from workers.steps import RequeueOrphans

settings = config.load()
app = Celery("fleet", include=["workers.tasks", "workers.signals"])
app.conf.update(**celery_config(settings))
app.steps["consumer"].add(RequeueOrphans)
