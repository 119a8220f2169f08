"""Classification stage: task files, metrics, frozen-feature cache, encoder resolution, results."""
