"""What the hub's web pages share: the vendored front-end libraries and the text catalogues.

The console (served by the store's owner) and the relays' form (served by the HTTP intake)
both run on aiohttp; neither loads anything from a CDN, so they work on a town hall's
network with no way out.
"""
