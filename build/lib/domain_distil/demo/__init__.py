"""The embedded demo: offline pretrained teachers and a seeded generator of demo corpora and tasks."""
