"""The demo's relay: one account of each municipality's desk would be noise; one is enough."""

from __future__ import annotations

from veille.config import Settings
from veille.producers.relay.accounts import ACCOUNTS_FILE, AccountStore
from veille.territory import Territory

DEMO_LOGIN = "demo-accueil"


def demo_account(settings: Settings, territory: Territory) -> tuple[str, str, str]:
    """(login, password, town name) of the demo's town-hall desk; a new password each run
    (only hashes are kept, so the previous one cannot be shown again)."""
    store = AccountStore(settings.state_dir / ACCOUNTS_FILE)
    town = sorted(territory.municipalities)[0]
    existing = next((a for a in store.accounts().values() if a.login == DEMO_LOGIN and a.active), None)
    if existing is not None:
        account, password = store.rotate(existing.id)
    else:
        account, password = store.issue("Accueil de la mairie (démo)", kind="town_hall_desk",
                                        municipalities=[town], login=DEMO_LOGIN)
    return account.login, password, territory.municipalities[account.municipalities[0]].name
