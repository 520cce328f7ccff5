"""End-to-end evaluation of a model dir through the service pipeline: metrics, matching, reports, CLI.

`metrics` and `matching` use numpy/shapely/rapidfuzz only (no torch), so they also run where only the
service is installed; `run` drives `service.pipeline.OcrPipeline` and the domain profiles.
"""
