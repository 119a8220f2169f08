"""Artifacts: the folders stages hand each other, each with a ``manifest.json`` saying what made it.

A later stage finds an earlier stage's output by reading manifests (``students.resolve_student``),
never by importing the stage that made it or re-hashing its inputs.
"""
