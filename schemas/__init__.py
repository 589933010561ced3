"""dripstream: schemas."""
