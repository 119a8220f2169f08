"""Seeded generator of the demo's corpora and labeled tasks (see docs/demo-data.md)."""

from domain_distil.demo.data.generator import LANGUAGES, generate_demo_data

__all__ = ["LANGUAGES", "generate_demo_data"]
