"""Single sign-on for the agency desk (and the console, when a deployment configures it):
any OpenID Connect provider, ProConnect in production.

``config``: the settings (``VEILLE_OIDC_*``, off when unset); ``provider``: the relying party
through Authlib (discovery, PKCE, the code exchange, every token check); ``views``: the routes
the desk mounts (``oidc_routes`` gives its ``extra_routes``). Who someone is on the territory
comes from ``identity.yaml`` (:mod:`veille.territory.identity_map`).
"""

from veille.web.oidc.config import OidcSettings
from veille.web.oidc.views import oidc_routes, with_provider_form_action

__all__ = ["OidcSettings", "oidc_routes", "with_provider_form_action"]
