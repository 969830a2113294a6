"""Alerts: rules over events and the registry, an evaluator loop, signed webhook notifications."""
