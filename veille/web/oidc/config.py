"""Single sign-on settings, from the environment (prefix ``VEILLE_OIDC_``); off when unset.

A deployment registers the hub as a client (a *fournisseur de service* for ProConnect) and sets
the issuer, the client id and secret, and the public base URL the provider redirects back to.
ProConnect also wants its own scopes (``siret``, ``usual_name``...); any OpenID Connect
provider works with the defaults.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from veille.config import Settings
from veille.territory.identity_map import IDENTITY_FILE

# ProConnect's: the e-mail, the names, the establishment (SIRET) and its unit, and which
# identity provider of the federation vouched for the person.
PROCONNECT_SCOPES = "openid email given_name usual_name siret organizational_unit idp_id"


class OidcSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VEILLE_OIDC_", env_file=None, extra="ignore")

    # The provider's issuer URL; discovery is <issuer>/.well-known/openid-configuration.
    issuer: str = ""
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    # The intake's public base URL as the provider knows it (the redirect URI registered there
    # is <base>/agence/oidc/callback). "" = the request's own (local runs; behind a proxy, set it).
    redirect_base: str = ""
    scopes: str = "openid email profile"
    # The button's label on the login page.
    provider_name: str = "ProConnect"
    # The rules giving a body and a role; "" = identity.yaml in the territory directory.
    identity_file: str = ""
    # Clock skew tolerated on the tokens' times (exp, iat), seconds.
    leeway_seconds: int = 30
    # How long a desk session lasts after login, hours; 0 = until the ID token's exp.
    # ProConnect's ID tokens live minutes while its own session lasts 12 hours: set e.g. 8.
    session_hours: float = 0.0

    @property
    def configured(self) -> bool:
        return bool(self.issuer and self.client_id)

    def identity_path(self, settings: Settings) -> Path:
        return Path(self.identity_file) if self.identity_file else settings.territory_dir / IDENTITY_FILE
