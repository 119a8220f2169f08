"""LightningDataModules: token shards for distillation, labeled task files for classification."""
