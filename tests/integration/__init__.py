"""Tests against a real Kafka broker and a real PostgreSQL server (see conftest.py)."""
