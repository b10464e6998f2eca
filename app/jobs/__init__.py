"""Jobs: graph runs queued in a store that survives restarts (the editor's Run queue and history; the
headless queue builds on it). Never import torch or Qt here."""

from app.jobs.records import Artifact
from app.jobs.store import ENDED, STATUSES, Job, JobStore, StoreProblem

__all__ = ["ENDED", "STATUSES", "Artifact", "Job", "JobStore", "StoreProblem"]
