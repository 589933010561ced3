"""dripstream: ops."""
