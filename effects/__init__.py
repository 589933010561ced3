"""dripstream: effects."""
