"""End-to-end tests use ``tea_process`` from tests/conftest.py."""
