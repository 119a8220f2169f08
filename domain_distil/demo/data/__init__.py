"""Seeded generator of the demo's corpora and labeled tasks (see docs/demo-data.md)."""
