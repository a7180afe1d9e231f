"""The canvas's JSON: semantic edits with the base revision, conflicts, refusals that store
nothing, undo and redo, the text pane, copy and paste, metrics and simulated paths."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from dsl.parse import parse_tree
from tests.web.conftest import Site, history_size, post_json, text_of


def model(client: TestClient, flow: str = "welcome") -> dict[str, Any]:
    response = client.get(f"/api/flows/{flow}")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def comments(text: str) -> list[str]:
    return [c.text for c in parse_tree(text).comments]


def test_the_model_draws_every_step_with_labelled_ports_and_saved_positions(
    user: TestClient,
) -> None:
    m = model(user)
    assert m["start"] == "welcome"
    nodes = {n["name"]: n for n in m["nodes"]}
    assert nodes["guide_read"]["kind"] == "wait_for"
    ports = {p["id"]: p for p in nodes["guide_read"]["ports"]}
    assert (ports["then"]["label"], ports["then"]["target"]) == ("met", "engaged")
    assert (ports["timeout"]["label"], ports["timeout"]["target"]) == ("timeout 3d", "story_day")
    branch = {p["id"]: p["label"] for p in nodes["check_activation"]["ports"]}
    assert branch == {"arm:0": "yes", "else": "no"}
    assert nodes["guide"]["position"] == [0, 240]
    assert nodes["guide_pause"]["ports"][0] == {
        "id": "next",
        "label": "",
        "title": "",
        "target": "guide",
        "explicit": False,
        "required": False,
    }
    assert m["triggers"] == ["trigger event signed_up"]
    assert m["published"] == {"version": 1, "current": True}


def test_an_edit_changes_the_text_and_keeps_every_comment(site: Site, user: TestClient) -> None:
    before = model(user)
    response = post_json(
        user,
        "/api/flows/welcome/ops",
        {
            "revision": before["revision"],
            "ops": [
                {
                    "op": "add_step",
                    "flow": "welcome",
                    "name": "nudge",
                    "action": "send service_guide",
                    "after": "guide",
                },
                {"op": "connect", "flow": "welcome", "step": "nudge", "target": "guide_read"},
                {"op": "move_step", "flow": "welcome", "step": "nudge", "x": 300, "y": 240},
            ],
        },
    )
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["revision"] != before["revision"]
    assert "  nudge: send service_guide -> guide_read\n" in after["text"]
    assert "    nudge: 300, 240\n" in after["text"]
    assert comments(after["text"]) == comments(before["text"])
    assert after["undo"] == "add step nudge, connect nudge → guide_read, move nudge"
    assert after["published"]["current"] is False
    assert text_of(site.engine, "welcome") == after["text"]


def test_an_edit_against_a_stale_revision_is_refused_and_shows_the_current_version(
    site: Site, user: TestClient
) -> None:
    first = model(user)
    rename = {"op": "rename_step", "flow": "welcome", "old": "guide", "new": "tour"}
    assert (
        post_json(
            user, "/api/flows/welcome/ops", {"revision": first["revision"], "ops": [rename]}
        ).status_code
        == 200
    )
    stored = history_size(site.engine)
    again = {"op": "rename_step", "flow": "welcome", "old": "story", "new": "proof"}
    response = post_json(
        user, "/api/flows/welcome/ops", {"revision": first["revision"], "ops": [again]}
    )
    assert response.status_code == 409
    body = response.json()
    assert "changed since you loaded it" in body["error"]
    assert body["model"]["revision"] != first["revision"]
    assert "  tour: send service_guide" in body["model"]["text"]
    assert "proof:" not in text_of(site.engine, "welcome")
    assert history_size(site.engine) == stored


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json", 400, "the body is not JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"ops": []}', 422, "`revision`"),
        (b'{"revision": "abc", "ops": []}', 422, "`revision`"),
        (None, 422, "`ops`: give a non-empty list"),
        (None, 422, "`ops.0.op`"),
        (None, 422, "`ops.0.x`"),
        (None, 422, "edits flow 'welcome', not 'other'"),
        (None, 422, "flow 'welcome' has no step 'nowhere'"),
        (None, 422, "is not a valid `duration` of step 'guide_pause'"),
    ],
)
def test_a_malformed_edit_is_refused_with_a_clear_reason_and_nothing_is_stored(
    site: Site, user: TestClient, body: bytes | None, status: int, message: str
) -> None:
    rev = model(user)["revision"]
    payloads = {
        "`ops`: give a non-empty list": {"revision": rev, "ops": []},
        "`ops.0.op`": {"revision": rev, "ops": [{"op": "explode", "flow": "welcome"}]},
        "`ops.0.x`": {
            "revision": rev,
            "ops": [{"op": "move_step", "flow": "welcome", "step": "guide", "x": "left", "y": 1}],
        },
        "edits flow 'welcome', not 'other'": {
            "revision": rev,
            "ops": [{"op": "delete_step", "flow": "other", "step": "a"}],
        },
        "flow 'welcome' has no step 'nowhere'": {
            "revision": rev,
            "ops": [{"op": "delete_step", "flow": "welcome", "step": "nowhere"}],
        },
        "is not a valid `duration` of step 'guide_pause'": {
            "revision": rev,
            "ops": [
                {
                    "op": "set_property",
                    "flow": "welcome",
                    "step": "guide_pause",
                    "key": "duration",
                    "value": "soon",
                }
            ],
        },
    }
    before_text = text_of(site.engine, "welcome")
    before_history = history_size(site.engine)
    from tests.web.conftest import csrf

    headers = {"x-csrftoken": csrf(user), "content-type": "application/json"}
    if body is None:
        response = post_json(user, "/api/flows/welcome/ops", payloads[message])
    else:
        response = user.post("/api/flows/welcome/ops", content=body, headers=headers)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert text_of(site.engine, "welcome") == before_text
    assert history_size(site.engine) == before_history


def test_an_edit_to_an_unknown_flow_is_404(user: TestClient) -> None:
    op = {"op": "delete_step", "flow": "nowhere", "step": "a"}
    response = post_json(user, "/api/flows/nowhere/ops", {"revision": "0" * 64, "ops": [op]})
    assert response.status_code == 404
    assert "no flow 'nowhere'" in response.json()["error"]


def test_undo_and_redo_walk_the_history_of_texts(user: TestClient) -> None:
    start = model(user)
    assert start["undo"] is None and start["redo"] is None
    renamed = post_json(
        user,
        "/api/flows/welcome/ops",
        {
            "revision": start["revision"],
            "ops": [{"op": "rename_step", "flow": "welcome", "old": "story", "new": "proof"}],
        },
    ).json()
    undone = post_json(user, "/api/flows/welcome/undo", {"revision": renamed["revision"]}).json()
    assert undone["text"] == start["text"]
    assert undone["redo"] == "rename story to proof"
    redone = post_json(user, "/api/flows/welcome/redo", {"revision": undone["revision"]}).json()
    assert redone["text"] == renamed["text"]
    nothing = post_json(user, "/api/flows/welcome/redo", {"revision": redone["revision"]})
    assert nothing.status_code == 422
    assert nothing.json()["error"] == "there is nothing to redo"
    stale = post_json(user, "/api/flows/welcome/undo", {"revision": start["revision"]})
    assert stale.status_code == 409


def test_a_new_edit_after_undo_drops_what_could_be_redone(user: TestClient) -> None:
    start = model(user)
    one = post_json(
        user,
        "/api/flows/welcome/ops",
        {
            "revision": start["revision"],
            "ops": [{"op": "move_step", "flow": "welcome", "step": "guide", "x": 1, "y": 1}],
        },
    ).json()
    back = post_json(user, "/api/flows/welcome/undo", {"revision": one["revision"]}).json()
    other = post_json(
        user,
        "/api/flows/welcome/ops",
        {
            "revision": back["revision"],
            "ops": [{"op": "move_step", "flow": "welcome", "step": "guide", "x": 2, "y": 2}],
        },
    ).json()
    assert other["redo"] is None
    assert other["undo"] == "move guide"


def test_the_palette_adds_a_step_of_every_kind_with_a_valid_default(user: TestClient) -> None:
    from flowbuilder.canvas import PALETTE

    m = model(user)
    for kind, _, _ in PALETTE:
        response = post_json(
            user,
            "/api/flows/welcome/add",
            {"revision": m["revision"], "kind": kind, "x": 10, "y": 20},
        )
        if kind == "reach_goal":
            assert response.status_code == 200, response.text
        assert response.status_code == 200, (kind, response.text)
        name = response.headers["x-added-step"]
        m = response.json()
        node = next(n for n in m["nodes"] if n["name"] == name)
        assert node["kind"] == kind
        assert node["position"] == [10, 20]
    assert parse_tree(m["text"]).tree is not None


def test_the_palette_refuses_an_unknown_kind(user: TestClient) -> None:
    response = post_json(
        user, "/api/flows/welcome/add", {"revision": model(user)["revision"], "kind": "fax"}
    )
    assert response.status_code == 422
    assert "`kind`: one of send" in response.json()["error"]


def test_paste_copies_steps_under_new_names_and_keeps_their_inner_references(
    user: TestClient,
) -> None:
    m = model(user)
    steps = [
        {"name": "guide", "action": "send service_guide"},
        {
            "name": "guide_read",
            "action": "wait for clicked(guide) up to 3d {\n  then -> engaged\n  timeout -> guide\n}",
        },
    ]
    response = post_json(
        user,
        "/api/flows/welcome/paste",
        {"revision": m["revision"], "steps": steps, "x": 0, "y": 900},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-added-step"] == "guide_copy,guide_read_copy"
    text = response.json()["text"]
    assert "guide_read_copy: wait for clicked(guide_copy) up to 3d {" in text
    assert "timeout -> guide_copy" in text and "then -> engaged" in text
    bad = post_json(
        user,
        "/api/flows/welcome/paste",
        {"revision": response.json()["revision"], "steps": "guide"},
    )
    assert bad.status_code == 422


def test_the_text_pane_saves_a_text_that_parses_and_refuses_one_that_does_not(
    site: Site, user: TestClient
) -> None:
    m = model(user)
    edited = m["text"].replace(
        "  story: send success_story", "  story: send success_story  # the proof"
    )
    saved = post_json(user, "/api/flows/welcome/text", {"revision": m["revision"], "text": edited})
    assert saved.status_code == 200
    assert saved.json()["text"] == edited
    broken = edited.replace("wait 1d", "wait soon")
    refused = post_json(
        user, "/api/flows/welcome/text", {"revision": saved.json()["revision"], "text": broken}
    )
    assert refused.status_code == 422
    diagnostic = refused.json()["diagnostics"][0]
    assert diagnostic["code"] == "FB100" and diagnostic["line"] == 19
    assert text_of(site.engine, "welcome") == edited
    renamed = post_json(
        user,
        "/api/flows/welcome/text",
        {
            "revision": saved.json()["revision"],
            "text": edited.replace("flow welcome ", "flow hello "),
        },
    )
    assert renamed.status_code == 422
    assert "no longer declares flow 'welcome'" in renamed.json()["error"]


def test_metrics_count_each_step(user: TestClient) -> None:
    data = user.get("/api/flows/welcome/metrics").json()
    welcome = data["steps"]["welcome"]
    assert welcome["sent"] > 0
    assert welcome["entered"] >= welcome["sent"]
    assert 0 < welcome["opened"] <= welcome["sent"]
    assert [v["name"] for v in data["variants"]] == ["personal", "practical"]
    assert data["variants"][0]["open_confidence"] is None
    assert data["variants"][1]["open_confidence"] is not None


def test_a_simulated_path_for_a_test_case_and_for_a_real_lead(user: TestClient) -> None:
    path = user.get("/api/flows/welcome/path", params={"fixture": "welcome.test.toml#1"}).json()
    assert ["welcome", "guide_pause"] in path["edges"]
    assert path["problems"] == []
    assert path["visits"][0]["what"] == "enter"
    lead = user.get("/api/leads", params={"q": ""}).json()[0]
    real = user.get("/api/flows/welcome/path", params={"lead": lead["id"]})
    assert real.status_code == 200
    assert real.json()["who"] == lead["email"]
    for params, message in [
        ({}, "choose a lead"),
        ({"lead": "x"}, "`lead`"),
        ({"lead": "999999"}, "no lead 999999"),
        ({"fixture": "nope#1"}, "no test case 'nope#1'"),
    ]:
        response = user.get("/api/flows/welcome/path", params=params)
        assert response.status_code == 422
        assert message in response.json()["error"]


def test_the_lead_picker_finds_leads_by_email(user: TestClient) -> None:
    found = user.get("/api/leads", params={"q": "lead000"}).json()
    assert found and all("lead000" in lead["email"] for lead in found)


def test_the_page_and_its_model_compile_the_workspace_once_and_an_edit_once_more(
    user: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The texts' compilation and lint are kept by the texts: the editor's page and its model
    read the same texts, and an edit compiles only the text it makes."""
    from flowbuilder import drafts

    compiled: list[int] = []
    compile_texts = drafts.compile_texts

    def counting(files: dict[str, str]) -> Any:
        compiled.append(len(files))
        return compile_texts(files)

    monkeypatch.setattr(drafts, "compile_texts", counting)
    drafts._checked.cache_clear()
    assert user.get("/flows/welcome").status_code == 200
    m = model(user)
    assert len(compiled) == 1
    for n in range(2):
        op = {"op": "move_step", "flow": "welcome", "step": "guide", "x": 10 + n, "y": 240}
        answer = post_json(user, "/api/flows/welcome/ops", {"revision": m["revision"], "ops": [op]})
        assert answer.status_code == 200, answer.text
        m = answer.json()
        assert f"    guide: {10 + n}, 240\n" in m["text"]
    assert len(compiled) == 3
