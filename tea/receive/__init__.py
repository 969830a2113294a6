"""Receivers: each turns its wire format into canonical events and maps the outcome back."""
