"""The credential store shared by intake keys and relay accounts: files written before it load."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Literal

from veille.producers.credentials import LoginStore, PasswordAccount, ScryptPasswords, Sha256Tokens
from veille.producers.intake_keys import KeyStore
from veille.producers.relay.accounts import AccountStore

# As intake_keys.json was written before the store (field order of the old IntakeKey):
# the secret of key 0123456789ab is "old-secret".
OLD_KEYS = [{"id": "0123456789ab", "name": "Mairie", "municipalities": ["35401"], "agencies": [],
             "alerts": False,
             "secret_sha256": "5d865deae06fbd34fe9ce848f3e5fc4368f2f612b18aef47f29f2164563a0140",
             "created_at": "2025-01-02T03:04:05Z", "rotated_at": None, "revoked_at": None}]
# As relay_accounts.json was written before the store; the password is abcd-efgh-jkmn-pqrs.
OLD_ACCOUNTS = [{"id": "01234567", "login": "accueil-35401", "name": "Accueil", "kind": "town_hall_desk",
                 "municipalities": ["35401"],
                 "password_hash": "scrypt$1024$8$1$aPsg12CBn0KuhtkqFOpoLg==$"
                                  "UXFTG15Owe9rYzvcV98flteKM5Uhq3Ws+lH8ut9xgLk=",
                 "created_at": "2025-01-02T03:04:05Z", "rotated_at": None, "revoked_at": None}]


def test_files_written_before_the_store_still_load_and_authenticate(tmp_path: Path) -> None:
    (tmp_path / "intake_keys.json").write_text(json.dumps(OLD_KEYS))
    (tmp_path / "relay_accounts.json").write_text(json.dumps(OLD_ACCOUNTS))
    keys, accounts = KeyStore(tmp_path / "intake_keys.json"), AccountStore(tmp_path / "relay_accounts.json")
    key = keys.authenticate("veille_0123456789ab_old-secret")
    assert key is not None and key.municipalities == ["35401"]
    assert keys.authenticate("veille_0123456789ab_other") is None
    account = accounts.authenticate("Accueil-35401", "abcd-efgh-jkmn-pqrs")
    assert account is not None and account.kind == "town_hall_desk"
    # Written back by the store, each file keeps every field of its old records, under the same names.
    keys.rotate("0123456789ab")
    accounts.revoke("accueil-35401")
    assert sorted(json.loads((tmp_path / "intake_keys.json").read_text())[0]) == sorted(OLD_KEYS[0])
    assert sorted(json.loads((tmp_path / "relay_accounts.json").read_text())[0]) == sorted(OLD_ACCOUNTS[0])


class _Agent(PasswordAccount):
    """A third use, as agency accounts will be: a login, a password and a scope of its own."""

    role: Literal["agent", "chef"]
    agency: str

    def describe(self) -> str:
        return f"{self.id}  {self.login}  {self.role} of {self.agency}"


def test_a_third_use_gets_issue_rotate_revoke_and_a_private_file_reloaded_on_change(tmp_path: Path) -> None:
    path = tmp_path / "agents.json"
    store = LoginStore(path, _Agent, ScryptPasswords(), id_bytes=4)
    other = LoginStore(path, _Agent, ScryptPasswords(), id_bytes=4)  # another process, same file
    agent, password = store.issue({"login": "chef-sdis35", "name": "Chef de salle", "role": "chef",
                                   "agency": "sdis35"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and password not in path.read_text()
    assert other.authenticate("chef-sdis35", password) == agent
    rotated, new = store.rotate(agent)
    assert other.authenticate("chef-sdis35", password) is None
    assert other.authenticate("chef-sdis35", new) == rotated and rotated.generation != agent.generation
    store.revoke(rotated)
    assert other.authenticate("chef-sdis35", new) is None and other.get(agent.id) is None
    assert other.find("chef-sdis35") is not None  # still listed, as revoked


def test_tokens_are_kept_as_their_hash_only() -> None:
    tokens = Sha256Tokens()
    secret = tokens.new()
    stored = tokens.hash(secret)
    assert secret not in stored and tokens.check(secret, stored) and not tokens.check(secret + "x", stored)
