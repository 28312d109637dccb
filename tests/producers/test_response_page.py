"""The e-mails' response page without a broker: the page, every refusal, CSRF, rate limits.

Publishing an answer (real broker) is ``test_response_publish.py``; in a browser,
``test_response_browser.py``.
"""

from __future__ import annotations

import html
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from response_helpers import (
    AGENCY,
    Client,
    answer,
    csrf_of,
    delivery,
    link_path,
    routed_dispatch,
    run_page,
)

from veille.config import Settings
from veille.deliver.links import ResponseLinks, UsedLinks
from veille.producers.gate import Quota
from veille.producers.response.forms import clean, note
from veille.schemas.models import IncidentStatus

WEEK = timedelta(days=7)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path)


@pytest.fixture
def used(tmp_path: Path) -> UsedLinks:
    return UsedLinks(tmp_path / "used.json", WEEK)


def test_a_valid_link_opens_the_page(settings: Settings, used: UsedLinks) -> None:
    d = routed_dispatch(settings)
    path = link_path(d)

    async def scenario(client: Client) -> None:
        resp = await client.get(path)
        page = await resp.text()
        assert resp.status == 200, page
        assert '<html lang="fr">' in page and 'name="viewport"' in page
        for shown in ("Chaussée dégradée (danger)", "Montveille (35401)", "Mairie de Montveille",
                      d.id.hex[:4].upper() + "-" + d.id.hex[4:8].upper(), "Pris en compte", "Sur place",
                      "Résolu", "Pas de notre ressort", "Hors de notre territoire", "Envoyer la réponse"):
            assert shown in page, shown
        assert "Nid-de-poule" not in page  # the description is not in the link: never on the page
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        cookie = resp.headers["Set-Cookie"]
        assert "veille_reponse=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert "Path=/reponse/" in cookie
        css = await client.get(page.split('rel="stylesheet" href="')[1].split('"')[0])
        assert css.status == 200 and "text/css" in css.headers["Content-Type"]

    run_page(settings, used, scenario)


def test_forged_expired_other_and_truncated_links_are_refused(settings: Settings, used: UsedLinks) -> None:
    d, other = routed_dispatch(settings), routed_dispatch(settings)
    path = link_path(d)
    token = path.rsplit("/", 1)[1]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    old_links = ResponseLinks([delivery().link_key.get_secret_value()], WEEK)
    old = f"/reponse/{d.id}/" + old_links.token(d.id, AGENCY)  # no incident id in it
    cases = [
        (f"/reponse/{d.id}/{flipped}", 403, "n'est pas valide"),
        (f"/reponse/{d.id}/{token[:-12]}", 403, "n'est pas valide"),
        (link_path(d, delivery(link_key="someone else's key")), 403, "n'est pas valide"),
        (f"/reponse/not-a-uuid/{token}", 403, "autre signalement"),
        (f"/reponse/{other.id}/{token}", 403, "autre signalement"),
        (old, 410, "ne permet pas de répondre en ligne"),
        (f"/reponse/{d.id}", 404, "n'est pas valide"),
        (f"/reponse/{d.id}/", 404, "n'est pas valide"),
    ]

    async def scenario(client: Client) -> None:
        for url, status, message in cases:
            resp = await client.get(url)
            page = html.unescape(await resp.text())
            assert resp.status == status, (url, page)
            assert message in page and 'role="alert"' in page and "csrf_token" not in page, url
            # An answer through a refused link: refused before its form is read.
            if url.rstrip("/").count("/") == 3:
                resp = await client.post(url, data={"status": "resolved"})
                assert resp.status == status and message in html.unescape(await resp.text()), url
        assert used.answered(d.id) == set()

    run_page(settings, used, scenario)
    tiny = delivery(link_max_age_hours=0.0003)  # ~1 s
    expired = link_path(d, tiny)
    time.sleep(2.1)

    async def too_late(client: Client) -> None:
        for method in (client.get, client.post):
            resp = await method(expired)
            assert resp.status == 410 and "Ce lien a expiré" in html.unescape(await resp.text())

    run_page(settings, used, too_late, tiny)


def test_an_answer_needs_the_csrf_token_and_a_reason_to_reject(settings: Settings, used: UsedLinks) -> None:
    d = routed_dispatch(settings)
    path = link_path(d)

    async def scenario(client: Client) -> None:
        resp = await client.post(path, data={"status": "resolved"})
        assert resp.status == 400 and "La page a expiré" in await resp.text()
        await csrf_of(client, path)  # a session now, but a made-up token
        resp = await client.post(path, data={"status": "resolved", "csrf_token": "forged"})
        assert resp.status == 400 and "La page a expiré" in await resp.text()
        resp = await answer(client, path, "rejected")
        page = await resp.text()
        assert resp.status == 422 and "Choisissez le motif" in page and 'aria-invalid="true"' in page
        resp = await answer(client, path, "reopened")
        assert resp.status == 422 and "Choisissez une réponse" in await resp.text()
        resp = await answer(client, path, "rejected", reason="other", detail="x" * 501)
        assert resp.status == 422 and "500 caractères" in await resp.text()
        assert used.answered(d.id) == set()  # nothing spent

    run_page(settings, used, scenario)


def test_statuses_already_answered_are_shown_and_not_offered(settings: Settings, used: UsedLinks) -> None:
    d = routed_dispatch(settings)
    used.claim(d.id, IncidentStatus.acknowledged)

    async def scenario(client: Client) -> None:
        page = await (await client.get(link_path(d))).text()
        assert "déjà transmise" in page
        done = page.split('id="status-acknowledged"')[1].split(">")[0]
        assert "disabled" in done
        assert "disabled" not in page.split('id="status-resolved"')[1].split(">")[0]
        # The confirmation is shown only for a status really answered.
        assert "Réponse transmise" in await (await client.get(link_path(d) + "?transmis=acknowledged")).text()
        assert "Réponse transmise" not in await (await client.get(link_path(d) + "?transmis=resolved")).text()
        for status in (IncidentStatus.on_site, IncidentStatus.resolved, IncidentStatus.rejected):
            used.claim(d.id, status)
        page = await (await client.get(link_path(d))).text()
        assert "Toutes les réponses proposées ont déjà été transmises" in page and "<form" not in page

    run_page(settings, used, scenario)


def test_rate_limits_per_address_and_per_link(settings: Settings, used: UsedLinks) -> None:
    d, other = routed_dispatch(settings), routed_dispatch(settings)

    async def per_link(client: Client) -> None:
        for _ in range(3):
            assert (await client.get(link_path(d))).status == 200
        resp = await client.get(link_path(d))
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        assert "Trop de demandes" in await resp.text()
        assert (await client.post(link_path(d), data={})).status == 429
        assert (await client.get(link_path(other))).status == 200  # another link still works

    run_page(settings, used, per_link, address_quota=Quota(100, 100), link_quota=Quota(0.01, 3))

    async def per_address(client: Client) -> None:
        for n in range(5):
            assert (await client.get(link_path(routed_dispatch(settings)))).status == 200, n
        resp = await client.get(link_path(routed_dispatch(settings)))
        assert resp.status == 429
        assert (await client.get(f"/reponse/{uuid.uuid4()}/forged")).status == 429  # tried tokens too

    run_page(settings, used, per_address, address_quota=Quota(0.01, 5), link_quota=Quota(100, 100))


def test_the_note_carries_the_reason_and_a_clean_precision() -> None:
    assert note(IncidentStatus.resolved, "other", "ignored") is None
    assert note(IncidentStatus.rejected, "outside_area", "") == \
        "Pas de notre ressort : Hors de notre territoire"
    assert note(IncidentStatus.rejected, "other_body", "  Voir  le\nSDIS\u202e ") == \
        "Pas de notre ressort : Relève d'un autre service ou organisme. Voir le SDIS"
    assert note(IncidentStatus.rejected, "made-up", "x") is None
    assert clean("a\x00b\tc") == "a b c" and len(clean("é" * 900)) == 500
