"""Real data sources for ``task=prepare`` (Stack Exchange, Wikipedia, conversational files, Debian) and
the seeded sampling they share; see docs/data-sources.md. Small dumps in the real formats, for tests and
benchmarks, are in tests/synthetic_dumps.py.
"""
