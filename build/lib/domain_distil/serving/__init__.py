"""Serving: one encoder, many classifier heads (bundle, Python predictor, HTTP server, CPU variants)."""
