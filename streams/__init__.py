"""dripstream: streams."""
