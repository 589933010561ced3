"""dripstream: schemas — the wire format (envelope, JSON Schemas, versions, definitions)."""
