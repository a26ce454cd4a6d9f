"""`kycflow serve`: the supervisor, its HTTP workers (ingest + read API) and their metrics.

The composition root: the only package that starts either runtime.
"""
