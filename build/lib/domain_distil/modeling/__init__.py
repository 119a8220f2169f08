"""Plain ``nn.Module`` code: teacher loading, student construction, classifier heads."""
