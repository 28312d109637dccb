"""The monitoring cells' web console, served by the process that owns the store (see app.py)."""
