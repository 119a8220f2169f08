"""Stages: typed functions that turn artifacts into artifacts (distil, classify, report, ...).

A stage function takes plain typed arguments (dataclasses, paths, factories), never the whole Hydra
config. The builders that turn a config into those arguments (``plan_from_config``, ``classify_job``,
``report_request``, ``speed_request``) sit beside their stage, so a task and an experiment that
reuses the stage build them one way; no stage imports a task.
"""
