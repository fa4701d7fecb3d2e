"""Manifests, dataset preparers, datasets, batching."""
