"""The demo's desk: one account for one body that gets incident dispatches (the first one
receiving public works), and the lines ``veille demo --keep-running`` prints."""

from __future__ import annotations

from veille.config import Settings
from veille.producers.desk.accounts import ACCOUNTS_FILE, AccountStore
from veille.schemas.enums import ServiceKind
from veille.territory import Territory

DEMO_LOGIN = "demo-agence"


def demo_agency(territory: Territory) -> str:
    """A body the simulated reports reach: services techniques first, else any."""
    for kind in (ServiceKind.public_works, ServiceKind.stormwater, ServiceKind.municipal_police):
        for area in territory.areas_for(kind):
            return area.agency_id
    return sorted(territory.agencies)[0]


def demo_lines(settings: Settings, territory: Territory, url: str) -> list[str]:
    """Issue (or rotate) the demo's chef account; a new password each run (only hashes are kept)."""
    store = AccountStore(settings.state_dir / ACCOUNTS_FILE)
    agency = demo_agency(territory)
    existing = next((a for a in store.accounts().values() if a.login == DEMO_LOGIN and a.active), None)
    if existing is not None and existing.agency_id == agency:
        account, password = store.rotate(existing.id)
    else:
        if existing is not None:
            store.revoke(existing.id)
        account, password = store.issue("Chef de service (démo)", agency_id=agency, role="chef",
                                        login=DEMO_LOGIN)
    return [f"Agency desk ({territory.agencies[agency].name}): {url}/agence/",
            f"  login {account.login}  password {password}"]
