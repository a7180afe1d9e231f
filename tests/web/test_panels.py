"""The property panel, the keyboard outline editor and publishing, as htmx uses them."""

from __future__ import annotations

import json

from sqlalchemy import func, select
from starlette.testclient import TestClient

from flowbuilder.store.db import reading
from flowbuilder.store.schema import FlowVersion
from tests.web.conftest import Site, csrf, history_size, text_of


def revision(client: TestClient, flow: str = "welcome") -> str:
    return str(client.get(f"/api/flows/{flow}").json()["revision"])


def htmx_post(client: TestClient, url: str, data: dict[str, str]) -> object:
    return client.post(url, data=data, headers={"x-csrftoken": csrf(client), "hx-request": "true"})


def test_the_panel_shows_the_fields_of_a_send_step(user: TestClient) -> None:
    html = user.get("/flows/welcome/steps/guide/panel").text
    assert 'name="template"' in html and '<option value="service_guide" selected>' in html
    assert 'name="subject"' in html and 'name="preheader"' in html


def test_the_panel_writes_a_changed_subject_into_the_text(site: Site, user: TestClient) -> None:
    response = htmx_post(
        user,
        "/flows/welcome/steps/guide/panel",
        {
            "revision": revision(user),
            "name": "guide",
            "template": "service_guide",
            "subject": 'Your "first" flow',
            "preheader": "",
            "sender": "",
        },
    )
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert "Saved." in response.text  # type: ignore[attr-defined]
    trigger = json.loads(response.headers["hx-trigger"])  # type: ignore[attr-defined]
    assert trigger["flowChanged"]["revision"] == revision(user)
    assert '  guide: send service_guide subject "Your \\"first\\" flow"\n' in text_of(
        site.engine, "welcome"
    )


def test_the_panel_shows_inline_errors_and_stores_nothing(site: Site, user: TestClient) -> None:
    before = text_of(site.engine, "welcome")
    stored = history_size(site.engine)
    response = htmx_post(
        user,
        "/flows/welcome/steps/guide_pause/panel",
        {"revision": revision(user), "name": "9 lives", "duration": "soon"},
    )
    assert response.status_code == 422  # type: ignore[attr-defined]
    html = response.text  # type: ignore[attr-defined]
    assert 'id="e-duration"' in html and "expected a duration such as 24h" in html
    assert 'id="e-name"' in html and 'aria-invalid="true"' in html
    assert "2 fields need a change" in html
    assert text_of(site.engine, "welcome") == before
    assert history_size(site.engine) == stored


def test_an_edit_the_text_refuses_is_shown_on_its_field(user: TestClient) -> None:
    response = htmx_post(
        user,
        "/flows/welcome/steps/guide_pause/panel",
        {"revision": revision(user), "name": "guide", "duration": "2d"},
    )
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert "already has a step &#39;guide&#39;" in response.text  # type: ignore[attr-defined]


def test_the_panel_renames_a_step_and_every_reference_to_it(site: Site, user: TestClient) -> None:
    response = htmx_post(
        user,
        "/flows/welcome/steps/guide/panel",
        {
            "revision": revision(user),
            "name": "tour",
            "template": "service_guide",
            "subject": "",
            "preheader": "",
            "sender": "",
        },
    )
    assert response.status_code == 200  # type: ignore[attr-defined]
    text = text_of(site.engine, "welcome")
    assert "  tour: send service_guide\n" in text and "wait for clicked(tour)" in text


def test_a_stale_panel_is_refused_and_the_canvas_told_to_reload(
    site: Site, user: TestClient
) -> None:
    before = text_of(site.engine, "welcome")
    response = htmx_post(
        user,
        "/flows/welcome/steps/guide_pause/panel",
        {"revision": "0" * 64, "name": "guide_pause", "duration": "5d"},
    )
    assert response.status_code == 409  # type: ignore[attr-defined]
    assert "changed since this panel was loaded" in response.text  # type: ignore[attr-defined]
    assert "flowChanged" in response.headers["hx-trigger"]  # type: ignore[attr-defined]
    assert text_of(site.engine, "welcome") == before


def test_the_panel_of_an_unknown_step_says_so(user: TestClient) -> None:
    response = user.get("/flows/welcome/steps/nowhere/panel")
    assert response.status_code == 404
    assert "has no step" in response.text


def test_the_outline_lists_every_step_with_forms_for_every_action(user: TestClient) -> None:
    html = user.get("/flows/welcome/outline").text
    for step in ("welcome", "guide_read", "check_activation", "done"):
        assert f'id="outline-{step}"' in html
    assert html.count('name="action" value="rename"') == 14
    assert 'name="action" value="add"' in html


def test_the_outline_renames_connects_adds_and_deletes(site: Site, user: TestClient) -> None:
    steps = [
        ({"action": "rename", "step": "story", "new_name": "proof"}, "Renamed story to proof."),
        (
            {"action": "connect", "step": "engaged", "port": "next", "target": "story_day"},
            "Connected engaged",
        ),
        ({"action": "add", "kind": "wait", "name": "breather"}, "Added step breather (Wait)."),
        ({"action": "delete", "step": "breather"}, "Deleted breather."),
    ]
    for form, message in steps:
        response = htmx_post(user, "/flows/welcome/outline", {"revision": revision(user), **form})
        assert response.status_code == 200, response.text  # type: ignore[attr-defined]
        assert message in response.text  # type: ignore[attr-defined]
    text = text_of(site.engine, "welcome")
    assert "  proof: send success_story" in text
    assert "  engaged: update lead.score += 5 -> story_day" in text
    assert "breather" not in text


def test_the_outline_shows_a_refused_action_and_stores_nothing(
    site: Site, user: TestClient
) -> None:
    before = text_of(site.engine, "welcome")
    response = htmx_post(
        user,
        "/flows/welcome/outline",
        {"revision": revision(user), "action": "delete", "step": "guide"},
    )
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert "cannot be deleted" in response.text  # type: ignore[attr-defined]
    stale = htmx_post(
        user, "/flows/welcome/outline", {"revision": "1" * 64, "action": "delete", "step": "story"}
    )
    assert stale.status_code == 409  # type: ignore[attr-defined]
    assert text_of(site.engine, "welcome") == before


def test_publishing_shows_the_impact_then_stores_a_new_version(
    site: Site, user: TestClient
) -> None:
    unchanged = user.get("/flows/welcome/publish").text
    assert "Nothing changed since the last publication" in unchanged
    htmx_post(
        user,
        "/flows/welcome/outline",
        {
            "revision": revision(user),
            "action": "rename",
            "step": "guide_pause",
            "new_name": "pause",
        },
    )
    preview = user.get("/flows/welcome/publish").text
    assert "What happens to the leads in flight" in preview
    assert "1 → 2" in preview
    assert "What the change does to a replayed population" in preview
    with reading(site.engine) as conn:
        before = conn.execute(select(func.count()).select_from(FlowVersion)).scalar_one()
    done = htmx_post(user, "/flows/welcome/publish", {})
    assert done.status_code == 200  # type: ignore[attr-defined]
    assert "Published: <code>welcome</code> v2" in done.text  # type: ignore[attr-defined]
    with reading(site.engine) as conn:
        assert (
            conn.execute(select(func.count()).select_from(FlowVersion)).scalar_one() == before + 1
        )


def test_a_workspace_with_errors_is_not_published(site: Site, user: TestClient) -> None:
    model = user.get("/api/flows/welcome").json()
    broken = model["text"].replace("guide: send service_guide", "guide: send no_such_template")
    from tests.web.conftest import post_json

    assert (
        post_json(
            user, "/api/flows/welcome/text", {"revision": model["revision"], "text": broken}
        ).status_code
        == 200
    )
    preview = user.get("/flows/welcome/publish").text
    assert "cannot be published" in preview and "no_such_template" in preview
    refused = htmx_post(user, "/flows/welcome/publish", {})
    assert refused.status_code == 422  # type: ignore[attr-defined]
