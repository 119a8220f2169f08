"""Per-language templates and slot values of the demo-data generator: CC, TD and GENERAL dicts."""
