"""dripstream: aggregates."""
