"""dripstream: projections — the read models folded from the output stream (the Sequences
list, the Sequence History report, the per-contact view), in memory from a `.jsonl` file or in
PostgreSQL. See projections/README.md."""
