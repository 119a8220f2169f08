"""LightningModules: distillation and classification."""
