"""Pipelines: pull -> read -> card -> catalog, then the train and evaluate steps of a spec."""

from neurofm.pipeline.ingest import IngestReport, apply_card, ingest, ingest_dandi, ingest_pulled
from neurofm.pipeline.run import PipelineResult, run_pipeline

__all__ = [
    "IngestReport",
    "PipelineResult",
    "apply_card",
    "ingest",
    "ingest_dandi",
    "ingest_pulled",
    "run_pipeline",
]
