"""The safeguard plan's alert chain (PCS): the chain as data (``plan``), the encrypted
vulnerable-persons register (``register``), the cascade's pure decisions (``cascade``) and
the prevention actions' indicators (``prevention``). See docs/pcs.md."""
