"""Fakes for tests, demos and benchmarks: provider servers on loopback and in-memory senders."""
