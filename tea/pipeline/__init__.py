"""Stages between decoding and the durable buffer."""
