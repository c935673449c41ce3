"""Tests that need a real Kafka broker (see conftest.py)."""
