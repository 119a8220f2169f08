"""Stages: typed functions that turn artifacts into artifacts (distil, classify, report, ...).

A stage takes typed arguments, never the whole Hydra config; the builder from a config
(``plan_from_config``, ``classify_job``, ``report_request``, ``speed_request``) sits beside its stage,
so every caller builds them one way. No stage imports a task.
"""
