"""Residents hear back: ``veille notify run`` tells who consented of each meaningful change of
their incident (e-mail, SMS), and the references, links and texts the intake's tracking page
shares with it. Documented in ``docs/notify.md``."""
