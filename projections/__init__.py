"""dripstream: projections."""
