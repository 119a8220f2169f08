"""Stages: typed functions that turn artifacts into artifacts (distil, classify, report, ...).

They take plain typed arguments (dataclasses, paths, factories), never the whole Hydra config;
``domain_distil/tasks`` converts a config into those arguments.
"""
