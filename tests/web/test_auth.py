"""Signing in, CSRF on every state-changing route, and the guard on every private route."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from flowbuilder.store.db import reading
from flowbuilder.store.schema import RateLimitRow
from tests.web.conftest import EMAIL, PASSWORD, Site, csrf, sign_in
from web.app import create_app

PRIVATE_PAGES = [
    "/",
    "/flows",
    "/flows/welcome",
    "/flows/welcome/dashboard",
    "/flows/welcome/versions",
    "/leads",
    "/leads/1",
    "/lists",
    "/segments",
    "/mail",
    "/mail/1",
    "/mail/1/html",
    "/settings",
]
PRIVATE_PARTS = [
    ("GET", "/flows/welcome/outline"),
    ("GET", "/flows/welcome/steps/guide/panel"),
    ("GET", "/flows/welcome/publish"),
    ("GET", "/api/flows/welcome"),
    ("GET", "/api/flows/welcome/metrics"),
    ("GET", "/api/flows/welcome/path?fixture=welcome.test.toml%231"),
    ("GET", "/api/leads?q=a"),
    ("POST", "/api/flows/welcome/ops"),
    ("POST", "/api/flows/welcome/add"),
    ("POST", "/api/flows/welcome/paste"),
    ("POST", "/api/flows/welcome/text"),
    ("POST", "/api/flows/welcome/undo"),
    ("POST", "/api/flows/welcome/redo"),
    ("POST", "/flows/welcome/steps/guide/panel"),
    ("POST", "/flows/welcome/outline"),
    ("POST", "/flows/welcome/publish"),
    ("POST", "/flows"),
    ("POST", "/settings/api-keys"),
    ("POST", "/settings/api-keys/1/revoke"),
]
CSRF_GUARDED = [
    "/login",
    "/logout",
    "/flows",
    "/api/flows/welcome/ops",
    "/flows/welcome/steps/guide/panel",
    "/flows/welcome/outline",
    "/flows/welcome/publish",
    "/settings/api-keys",
    "/f/contact_us",
]


@pytest.mark.parametrize("url", PRIVATE_PAGES)
def test_a_private_page_sends_a_stranger_to_the_login_page(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(("method", "url"), PRIVATE_PARTS)
def test_a_private_part_answers_401_to_a_stranger(
    client: TestClient, method: str, url: str
) -> None:
    headers = {"x-csrftoken": csrf(client), "hx-request": "true"}
    response = client.request(method, url, headers=headers, json={})
    assert response.status_code == 401
    assert "sign in" in response.json()["error"]


def test_signing_in_opens_the_page_asked_for(client: TestClient) -> None:
    response = client.post(
        "/login",
        data={"email": EMAIL, "password": PASSWORD, "next": "/leads", "csrftoken": csrf(client)},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/leads"
    assert client.get("/leads").status_code == 200


def test_a_next_address_off_the_site_is_ignored(client: TestClient) -> None:
    response = client.post(
        "/login",
        data={
            "email": EMAIL,
            "password": PASSWORD,
            "next": "//evil.example/",
            "csrftoken": csrf(client),
        },
    )
    assert response.headers["location"] == "/flows"


def test_a_wrong_password_is_refused_with_a_message(client: TestClient) -> None:
    response = client.post(
        "/login", data={"email": EMAIL, "password": "wrong password!", "csrftoken": csrf(client)}
    )
    assert response.status_code == 401
    assert "do not match" in response.text
    assert client.get("/flows").status_code == 303


def test_an_unknown_email_gets_the_same_answer_as_a_wrong_password(client: TestClient) -> None:
    response = client.post(
        "/login",
        data={"email": "nobody@example.com", "password": PASSWORD, "csrftoken": csrf(client)},
    )
    assert response.status_code == 401
    assert "do not match" in response.text


def test_sign_in_attempts_are_rate_limited(client: TestClient) -> None:
    statuses = [
        client.post(
            "/login", data={"email": EMAIL, "password": "nope nope nope", "csrftoken": csrf(client)}
        ).status_code
        for _ in range(12)
    ]
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    assert (
        "Too many"
        in client.post(
            "/login", data={"email": EMAIL, "password": PASSWORD, "csrftoken": csrf(client)}
        ).text
    )


def test_the_sign_in_limit_is_shared_by_every_web_process_of_the_store(site: Site) -> None:
    """Two web apps on one store, as two processes or hosts would be: attempts spread over
    both count together, and the limit's answer says when to try again."""
    clients = [
        TestClient(create_app(site.settings, site.engine), follow_redirects=False) for _ in "ab"
    ]
    statuses = []
    for n in range(12):
        c = clients[n % 2]
        form = {"email": EMAIL, "password": "nope nope nope", "csrftoken": csrf(c)}
        statuses.append((response := c.post("/login", data=form)).status_code)
    assert statuses == [401] * 10 + [429, 429]
    assert 1 <= int(response.headers["retry-after"]) <= 7  # a hit every 6 s once the burst is spent
    with reading(site.engine) as conn:  # no address or IP is kept as it is
        keys = conn.execute(select(RateLimitRow.key)).scalars().all()
    assert len(keys) == 1 and EMAIL not in keys[0] and len(keys[0]) == 64


def test_signing_out_ends_the_session(client: TestClient) -> None:
    sign_in(client)
    assert client.get("/flows").status_code == 200
    response = client.post("/logout", data={"csrftoken": csrf(client)})
    assert response.status_code == 303
    assert client.get("/flows").status_code == 303


@pytest.mark.parametrize("url", CSRF_GUARDED)
def test_a_post_without_the_csrf_token_is_refused(client: TestClient, url: str) -> None:
    sign_in(client)
    response = client.post(url, data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 403
    assert "CSRF" in response.text


@pytest.mark.parametrize("url", CSRF_GUARDED)
def test_a_post_with_a_wrong_csrf_token_is_refused(client: TestClient, url: str) -> None:
    sign_in(client)
    forged = csrf(client)[:-4] + "AAAA"
    response = client.post(url, data={"csrftoken": forged}, headers={"x-csrftoken": forged})
    assert response.status_code == 403


def test_the_csrf_token_of_another_secret_is_refused(client: TestClient) -> None:
    from itsdangerous.url_safe import URLSafeSerializer

    foreign = URLSafeSerializer("another secret", "csrftoken").dumps("token")
    client.cookies.set("csrftoken", foreign)
    response = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrftoken": foreign}
    )
    assert response.status_code == 403


def test_every_page_carries_a_strict_content_security_policy(client: TestClient) -> None:
    response = client.get("/login")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_one_click_unsubscribe_post_needs_no_csrf_token(client: TestClient) -> None:
    pytest.importorskip("web.tracking")
    response = client.post(
        "/u/not-a-valid-token",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert "CSRF token verification failed" not in response.text
    assert response.status_code != 403


def test_the_event_api_needs_no_csrf_token(client: TestClient) -> None:
    response = client.post("/v1/track", json={"messageId": "1"})
    assert response.status_code == 401  # refused for want of a key, not of a CSRF token


@pytest.mark.parametrize("url", ["/pulse/l/not-a-link", "/t/c/not-a-token", "/u/not-a-token"])
def test_public_tracking_links_set_no_cookie(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code < 500
    assert "set-cookie" not in response.headers
