"""The desk's pages without a broker, as a hostile user would try them: another body's dispatch
ids in URLs and form fields, forged fields, replayed or foreign CSRF tokens, a rotated account,
the chef-only export, login throttling. (Publishing an action: ``test_desk_publish.py``.)"""

from __future__ import annotations

import csv
import html
import io
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp_session import new_session
from desk_helpers import Client, accounts, act, csrf_of, filled_book, log_in, routed_dispatch, run_desk
from response_helpers import link_path

from veille.config import Settings
from veille.producers import metrics
from veille.producers.desk import views
from veille.producers.desk.accounts import ACCOUNTS_FILE, AccountStore
from veille.web.identity import Identity, remember


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path)


def test_login_then_the_inbox_shows_the_body_s_dispatches_only(settings: Settings) -> None:
    book, d = filled_book(settings)

    async def scenario(client: Client) -> None:
        resp = await client.get("/agence/", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/agence/connexion"
        login_page = await (await client.get("/agence/connexion")).text()
        assert '<html lang="fr">' in login_page and "ProConnect" not in login_page  # no provider configured
        resp = await log_in(client, "voirie-montveille")
        assert resp.status == 303 and resp.headers["Location"] == "/agence/"
        cookie = resp.headers["Set-Cookie"]
        assert "SameSite=Lax" in cookie and "HttpOnly" in cookie and "Path=/;" in cookie
        page = html.unescape(await (await client.get("/agence/")).text())
        assert "Signalements de Mairie de Montveille" in page
        assert str(d["mine"].id) in page and str(d["theirs"].id) not in page
        assert str(d["shared"].id) not in page  # the syndicate's copy of the same incident
        assert "Syndicat mixte des eaux pluviales de la Veille" in page  # ...is named as also dispatched
        rows = await (await client.get("/agence/boite")).text()
        assert str(d["mine"].id) in rows and str(d["theirs"].id) not in rows
        page = html.unescape(await (await client.get(f"/agence/dispatches/{d['mine'].id}")).text())
        assert "Nid-de-poule profond devant l'école" in page and "Chaussée dégradée" in page
        # Another body's dispatch by URL: not found, exactly like an unknown id.
        for other in (d["theirs"].id, d["shared"].id, "00000000-0000-0000-0000-000000000000", "x"):
            resp = await client.get(f"/agence/dispatches/{other}")
            assert resp.status == 404
            assert "Nid-de-poule" not in await resp.text()

    run_desk(settings, book, scenario)


def test_actions_on_another_body_s_dispatch_publish_nothing(settings: Settings) -> None:
    """No gate on this app: anything that tried to publish would fail with a 500."""
    book, d = filled_book(settings)
    before = metrics.DESK.labels("not_theirs")._value.get()

    async def scenario(client: Client) -> None:
        await log_in(client, "voirie-montveille")
        for ids in ([str(d["theirs"].id)], [str(d["mine"].id), str(d["theirs"].id)], ["not-a-uuid"], []):
            resp = await act(client, ids, "resolved")
            assert resp.status in (404, 422), (ids, resp.status)
            body = await resp.json()
            assert body["done"] == [] and body["errors"]
        # Forged agency and incident fields are not the form's: ignored; the 404 stands.
        resp = await act(client, [str(d["theirs"].id)], "resolved", agency_id="mairie-35402",
                         incident_id=d["theirs"].event_id)
        assert resp.status == 404
        # A status the desk may not send, and a refusal without its reason.
        assert (await act(client, [str(d["mine"].id)], "received")).status == 422
        assert (await act(client, [str(d["mine"].id)], "rejected")).status == 422
        assert (await act(client, [str(d["mine"].id)], "rejected", reason="other", lat="91",
                          lon="2")).status == 422

    run_desk(settings, book, scenario)
    assert metrics.DESK.labels("not_theirs")._value.get() - before == 3  # counted, for the alerts


def test_csrf_tokens_bind_to_their_session(settings: Settings) -> None:
    book, d = filled_book(settings)

    async def scenario(client: Client) -> None:
        await log_in(client, "voirie-saint-meen")
        foreign = await csrf_of(client, "/agence/")  # a token of Saint-Méen's session
        client.session.cookie_jar.clear()
        await log_in(client, "voirie-montveille")
        resp = await act(client, [str(d["mine"].id)], "resolved", token=foreign)
        assert resp.status == 400 and "La page a expiré" in (await resp.json())["errors"]["csrf_token"]
        # No token at all; and a logout without a token does not log out.
        resp = await client.post("/agence/actions", data={"dispatch": str(d["mine"].id),
                                                          "status": "resolved"},
                                 headers={"Accept": "application/json"})
        assert resp.status == 400
        await client.post("/agence/deconnexion", data={})
        assert (await client.get("/agence/", allow_redirects=False)).status == 200
        # After logging out, the old session's token is worth nothing.
        token = await csrf_of(client, "/agence/")
        await client.post("/agence/deconnexion", data={"csrf_token": token})
        resp = await act(client, [str(d["mine"].id)], "resolved", token=token)
        assert resp.status == 401

    run_desk(settings, book, scenario)


def test_a_rotated_account_is_logged_out_and_the_export_is_for_chefs(settings: Settings) -> None:
    book, d = filled_book(settings)

    async def scenario(client: Client) -> None:
        await log_in(client, "voirie-montveille")
        assert (await client.get("/agence/export.csv")).status == 403
        AccountStore(settings.state_dir / ACCOUNTS_FILE).rotate("voirie-montveille")
        resp = await client.get("/agence/", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/agence/connexion"
        resp = await client.get("/agence/boite")
        assert resp.status == 401
        await log_in(client, "chef-montveille")
        page = await (await client.get("/agence/")).text()
        assert "Exporter en CSV" in page
        resp = await client.get("/agence/export.csv?etat=tous")
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(await resp.text())))
        assert rows[0][0] == "Référence" and [r[1] for r in rows[1:]] == [str(d["mine"].id)]
        assert "Jeanne" not in await resp.text()

    run_desk(settings, book, scenario)


def test_wrong_passwords_are_throttled(settings: Settings) -> None:
    book, _ = filled_book(settings)

    async def scenario(client: Client) -> None:
        codes = [(await log_in(client, "voirie-montveille", "faux")).status for _ in range(11)]
        assert codes[:10] == [403] * 10 and codes[10] == 429
        # The right password is throttled too, until the bucket refills.
        assert (await log_in(client, "voirie-montveille")).status == 429

    accounts(settings)
    run_desk(settings, book, scenario)


def test_a_response_link_lands_on_the_desk_for_its_body_only(settings: Settings) -> None:
    """One set of pages: the e-mail's signed link opens the desk's page of that dispatch for
    someone of that body logged in on the desk, and the single-dispatch page for anyone else."""
    book, d = filled_book(settings)
    mine, theirs = link_path(d["mine"]), link_path(d["theirs"])

    async def scenario(client: Client) -> None:
        resp = await client.get(mine, allow_redirects=False)
        assert resp.status == 200 and "Pas de notre ressort" in html.unescape(await resp.text())
        await log_in(client, "voirie-montveille")
        resp = await client.get(mine, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == f"/agence/dispatches/{d['mine'].id}"
        # Another body's link: its own response page, never the desk (nor that body's dispatch on it).
        resp = await client.get(theirs, allow_redirects=False)
        assert resp.status == 200 and "Saint-Méen" in html.unescape(await resp.text())
        # A rotated account's cookie no longer lands anywhere but the response page.
        AccountStore(settings.state_dir / ACCOUNTS_FILE).rotate("voirie-montveille")
        assert (await client.get(mine, allow_redirects=False)).status == 200

    run_desk(settings, book, scenario, response_page=True)


def test_actions_wait_until_the_read_model_caught_up(settings: Settings) -> None:
    """Right after a start the book is still being read: an action is answered 503 (the page's
    queue sends it again), never 404 (which it would drop as refused)."""
    book, d = filled_book(settings)
    book.caught_up.clear()

    async def scenario(client: Client) -> None:
        await log_in(client, "voirie-montveille")
        resp = await act(client, [str(d["mine"].id)], "resolved")
        assert resp.status == 503 and "réessayez" in (await resp.json())["errors"]["form"]

    run_desk(settings, book, scenario)


def test_the_inbox_shows_the_most_urgent_first_and_says_how_many_more(settings: Settings) -> None:
    book, d = filled_book(settings)
    extra = [routed_dispatch(settings, severity="minor") for _ in range(views.MAX_ROWS + 4)]
    for x in extra:
        book.apply(x)

    async def scenario(client: Client) -> None:
        await log_in(client, "chef-montveille")
        rows = html.unescape(await (await client.get("/agence/boite")).text())
        assert rows.index(str(d["mine"].id)) < rows.index(str(extra[0].id))  # severe before minor
        assert f"{views.MAX_ROWS} signalements affichés sur {views.MAX_ROWS + 5}" in rows
        assert rows.count('name="dispatch"') == views.MAX_ROWS
        narrowed = await (await client.get("/agence/boite?gravite=severe")).text()
        assert narrowed.count('name="dispatch"') == 1 and "affichés sur" not in narrowed
        export = await (await client.get("/agence/export.csv")).text()
        assert len(export.strip().splitlines()) == views.MAX_ROWS + 6  # the export is never cut

    run_desk(settings, book, scenario)


def test_single_sign_on_routes_share_the_desk_s_session(settings: Settings) -> None:
    """The hook single sign-on mounts its routes with: an identity it remembers in the desk's
    session authorizes exactly like a password login (its body only), until ``expires_at``."""
    book, d = filled_book(settings)

    def oidc_routes(desk_app: web.Application) -> None:
        async def callback(request: web.Request) -> web.Response:
            session = await new_session(request)
            remember(session, Identity(agency_id=request.query["agency"], role="agent",
                                       subject="https://idp.test user-1", via="oidc",
                                       expires_at=int(time.time()) + int(request.query["seconds"])))
            raise web.HTTPSeeOther("/agence/")

        desk_app.router.add_get("/oidc/callback", callback)

    async def scenario(client: Client) -> None:
        resp = await client.get("/agence/oidc/callback?agency=mairie-35402&seconds=600",
                                allow_redirects=False)
        assert resp.status == 303 and "SameSite=Lax" in resp.headers["Set-Cookie"]
        page = await (await client.get("/agence/")).text()
        assert str(d["theirs"].id) in page and str(d["mine"].id) not in page
        assert (await client.get(f"/agence/dispatches/{d['mine'].id}")).status == 404
        # The provider's session is over: so is the desk's.
        await client.get("/agence/oidc/callback?agency=mairie-35402&seconds=-1", allow_redirects=False)
        resp = await client.get("/agence/", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/agence/connexion"

    run_desk(settings, book, scenario, extra_routes=oidc_routes)


def test_the_dispatch_page_shows_the_incident_s_photos_through_signed_links(settings: Settings) -> None:
    """The body sees its incident's photos through URLs signed for its own dispatch (what the
    intake's /photos/ serves), and the page holds neither the digest nor a lasting link."""
    from response_helpers import routed_dispatch

    from veille.photos.links import PhotoLinks
    from veille.photos.settings import PhotoSettings

    digest = "ab" * 32
    book, d = filled_book(settings)
    with_photo = routed_dispatch(settings, photos=[{"sha256": digest}])
    book.apply(with_photo)

    async def scenario(client: Client) -> None:
        await log_in(client, "voirie-montveille")
        page = html.unescape(await (await client.get(f"/agence/dispatches/{with_photo.id}")).text())
        tokens = [part.split('"')[0] for part in page.split('src="/photos/')[1:]]
        assert len(tokens) == 1 and digest not in page
        claim = PhotoLinks.from_settings(PhotoSettings()).verify(tokens[0])
        assert claim.digest == digest and claim.dispatch_id == with_photo.id
        page = html.unescape(await (await client.get(f"/agence/dispatches/{d['mine'].id}")).text())
        assert "/photos/" not in page  # no photo, no section

    run_desk(settings, book, scenario)
