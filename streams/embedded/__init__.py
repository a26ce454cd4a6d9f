"""The embedded runtime: SQLite raw log -> processor -> projections, and replay from it."""
