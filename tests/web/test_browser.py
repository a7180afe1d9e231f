"""The editor in a real browser: Debian's Chromium driven by Playwright against the app served by
uvicorn on a free port. Each proof of the web issue is a test here; screenshots of the editor go
to `.flowbuilder/screenshots/` (and, with FLOWBUILDER_UPDATE_DOCS_IMAGES=1, the canvas picture of
the README to `docs/images/`)."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.fleet import free_port
from bench.web import ARGS, CHROMIUM, NO_CHROMIUM
from dsl.parse import parse_tree
from flowbuilder.config import Settings
from tests.web.conftest import EMAIL, EXAMPLES, PASSWORD

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ".flowbuilder" / "screenshots"
AXE = sorted((Path(__file__).parent / "vendor").glob("axe-*.min.js"))

if not CHROMIUM.exists():
    pytest.skip(NO_CHROMIUM, allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
# A busy CI machine answers an edit in seconds where a quiet one takes milliseconds: what the page
# should show gets 15 s to appear (Playwright's default is 5), so only a page that never shows it
# fails.
expect.set_options(timeout=15_000)


@pytest.fixture
def base_url(template_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on a fresh copy of the demo store for each test: no test sees another's edits."""
    import uvicorn

    from web.app import create_app

    folder = tmp_path_factory.mktemp("browser")
    shutil.copy(template_db, folder / "web.db")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'web.db'}",
        data_dir=folder,
        secret_key="browser-secret-" + "x" * 32,
        workspace=EXAMPLES,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the app did not start within 20 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=base_url)
    page = context.new_page()
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'CSP-SAMPLE ' + e.violatedDirective + ' [' + e.sample + '] ' + e.lineNumber + ':' + e.columnNumber))"
    )
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.text[:160]} at {page.url}")
            if m.type == "error" and ("Content Security Policy" in m.text or "CSP-SAMPLE" in m.text)
            else None
        ),
    )
    sign_in(page)
    yield page
    context.close()
    assert problems == [], problems


def sign_in(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/flows")


def open_editor(page: Page, flow: str) -> None:
    page.goto(f"/flows/{flow}")
    expect(page.locator(".drawflow-node.step").first).to_be_visible()


def text(page: Page) -> str:
    value: str = page.evaluate("document.querySelector('.CodeMirror').CodeMirror.getValue()")
    return value


def wait_for_text(page: Page, pattern: str) -> str:
    page.wait_for_function(
        "p => new RegExp(p, 'm').test(document.querySelector('.CodeMirror').CodeMirror.getValue())",
        arg=pattern,
        timeout=10_000,
    )
    return text(page)


def comments(source: str) -> list[str]:
    return [c.text for c in parse_tree(source).comments]


def node(page: Page, step: str) -> Any:
    return page.locator(f'.drawflow-node:has(.node-body[data-step="{step}"])')


def drag(page: Page, source: Any, target: Any) -> None:
    """Press on one element, move to the other, release: how Drawflow connects a port."""
    a = source.bounding_box()
    b = target.bounding_box()
    assert a and b
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=12)
    page.mouse.up()


def shoot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def connect(page: Page, step: str, port: int, target: str) -> None:
    drag(
        page,
        node(page, step).locator(f".outputs .output_{port}"),
        node(page, target).locator(".inputs .input_1"),
    )


def test_drag_a_send_step_connect_it_choose_its_template_and_keep_every_comment(page: Page) -> None:
    open_editor(page, "welcome")
    before = text(page)
    canvas = page.locator("#canvas").bounding_box()
    assert canvas
    page.locator('.palette-item[data-kind="send"]').drag_to(
        page.locator("#canvas"), target_position={"x": canvas["width"] - 160, "y": 160}
    )
    expect(node(page, "email")).to_be_visible()
    assert re.search(r"^  email: send \w+$", text(page), re.M)
    expect(page.locator("#panel h2")).to_contain_text("email")
    page.locator("#f-template").select_option("success_story")
    page.locator("#panel").get_by_role("button", name="Apply").click()
    wait_for_text(page, r"^  email: send success_story$")
    connect(page, "guide_pause", 1, "email")
    wait_for_text(page, r"^  guide_pause: wait 1d -> email$")
    connect(page, "email", 1, "guide")
    after = wait_for_text(page, r"^  email: send success_story -> guide$")
    assert comments(after) == comments(before)
    assert re.search(r"^    email: -?\d+, -?\d+$", after, re.M), (
        "the drop position is saved in the layout"
    )
    shoot(page, "editor-send-added")


def test_add_a_branch_connect_both_arms_then_undo(page: Page) -> None:
    open_editor(page, "cart_abandonment")
    canvas = page.locator("#canvas").bounding_box()
    assert canvas
    page.locator('.palette-item[data-kind="branch"]').drag_to(
        page.locator("#canvas"), target_position={"x": canvas["width"] - 160, "y": 120}
    )
    expect(node(page, "check")).to_be_visible()
    ends = [s for s in re.findall(r"^  (\w+): end", text(page), re.M)]
    sends = re.findall(r"^  (\w+): send", text(page), re.M)
    connect(page, "check", 1, sends[0])
    wait_for_text(page, rf"^    if opened\(\) -> {sends[0]}$")
    connect(page, "check", 2, sends[1])
    arms = wait_for_text(page, rf"^    else -> {sends[1]}$")
    assert f"if opened() -> {sends[0]}" in arms and ends
    shoot(page, "editor-branch")
    page.get_by_role("button", name="Undo").click()
    undone = wait_for_text(page, rf"^    else -> {ends[-1]}$")
    assert f"if opened() -> {sends[0]}" in undone
    page.get_by_role("button", name="Redo").click()
    wait_for_text(page, rf"^    else -> {sends[1]}$")


def test_rename_in_the_text_pane_and_the_canvas_follows(page: Page) -> None:
    open_editor(page, "ebook_nurture")
    source = text(page)
    name = re.search(r"^  (\w+): send", source, re.M)
    assert name
    old = name.group(1)
    page.evaluate(
        """old => {
          const cm = document.querySelector('.CodeMirror').CodeMirror;
          const line = cm.getValue().split('\\n').findIndex(l => l.startsWith('  ' + old + ': send'));
          cm.focus();
          cm.setSelection({line, ch: 2}, {line, ch: 2 + old.length});
        }""",
        old,
    )
    page.keyboard.type("first_touch")
    expect(node(page, "first_touch")).to_be_visible(timeout=10_000)
    expect(node(page, old)).to_have_count(0)
    expect(page.locator("#text-state")).to_have_text("saved")
    assert comments(text(page)) == comments(source)


def test_the_same_rename_with_the_keyboard_in_the_outline(page: Page) -> None:
    open_editor(page, "sales_conversion")
    source = text(page)
    old = re.findall(r"^  (\w+): send", source, re.M)[0]
    page.locator("#tab-canvas").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#outline-view")).to_be_visible()
    field = page.locator(f"#r-{old}")
    expect(field).to_be_visible()
    field.focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("first_touch")
    page.keyboard.press("Enter")
    expect(page.locator("#outline-message")).to_have_text(f"Renamed {old} to first_touch.")
    after = wait_for_text(page, r"^  first_touch: send")
    assert old not in re.findall(r"^  (\w+):", after, re.M)
    assert comments(after) == comments(source)
    shoot(page, "editor-outline")
    page.keyboard.press("Shift+Tab")
    page.locator("#tab-outline").focus()
    page.keyboard.press("ArrowLeft")
    expect(node(page, "first_touch")).to_be_visible()
    # The canvas was redrawn while hidden behind the outline; back in view, its edges are whole.
    assert page.evaluate(EDGES_MISSING_THEIR_PORTS) == []


def test_publish_shows_the_impact_preview_then_publishes(page: Page) -> None:
    open_editor(page, "recruitment")
    page.locator("#tab-outline").click()
    first = re.findall(r"^  (\w+):", text(page), re.M)[0]
    field = page.locator(f"#r-{first}")
    field.fill("opening")
    field.press("Enter")
    expect(page.locator("#outline-message")).to_contain_text("Renamed")
    page.get_by_role("button", name="Publish…").click()
    dialog = page.locator("#publish")
    expect(dialog.get_by_text("What happens to the leads in flight")).to_be_visible(timeout=20_000)
    expect(dialog.locator("tr.focus")).to_contain_text("recruitment")
    expect(dialog.get_by_text("What the change does to a replayed population")).to_be_visible()
    shoot(page, "editor-publish-preview")
    dialog.get_by_role("button", name="Publish now").click()
    expect(dialog.locator("#published-message")).to_contain_text("recruitment")
    dialog.get_by_role("button", name="Close").click()
    expect(page.locator("#flow-status")).to_have_text(re.compile(r"published v2"))


def test_simulate_a_test_case_and_see_its_path_on_the_canvas(page: Page) -> None:
    open_editor(page, "welcome")
    page.get_by_role("button", name="Simulate").click()
    page.locator("#fixture").select_option(index=0)
    page.locator("#run-simulation").click()
    expect(page.locator("#path-view")).to_be_visible()
    expect(page.locator("#path-list li").first).to_contain_text("enter")
    assert page.locator(".drawflow-node.visited").count() >= 8
    assert page.locator(".connection.taken").count() >= 7
    node(page, "guide").locator(".node-name").click()
    expect(page.locator("#panel #f-template")).to_have_value("service_guide")
    path = shoot(page, "editor-simulated-path")
    if os.environ.get("FLOWBUILDER_UPDATE_DOCS_IMAGES") == "1":
        (ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, ROOT / "docs" / "images" / "canvas.png")


def test_copy_and_paste_a_step(page: Page) -> None:
    open_editor(page, "reengagement")
    first = re.findall(r"^  (\w+): send", text(page), re.M)[0]
    node(page, first).locator(".node-name").click()
    expect(page.locator("#copy")).to_be_enabled()
    page.keyboard.press("Control+C")
    page.keyboard.press("Control+V")
    expect(node(page, f"{first}_copy")).to_be_visible()
    assert re.search(rf"^  {first}_copy: send", text(page), re.M)


def test_a_stale_canvas_shows_a_conflict_and_reloads(
    page: Page, browser: Browser, base_url: str
) -> None:
    open_editor(page, "cold_outreach")
    other = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=base_url)
    second = other.new_page()
    sign_in(second)
    open_editor(second, "cold_outreach")
    second.locator("#tab-outline").click()
    first = re.findall(r"^  (\w+):", text(second), re.M)[0]
    field = second.locator(f"#r-{first}")
    field.fill("changed_elsewhere")
    field.press("Enter")
    expect(second.locator("#outline-message")).to_contain_text("Renamed")
    other.close()
    page.locator('.palette-item[data-kind="wait"]').click()
    expect(page.locator("#conflict")).to_contain_text("changed since you loaded it")
    expect(node(page, "changed_elsewhere")).to_be_visible()
    expect(node(page, "pause")).to_have_count(0)


# Where each edge's curve starts and ends, against the centres of the dots it joins, in screen
# pixels: a list of the edges that miss their ports by more than a pixel.
EDGES_MISSING_THEIR_PORTS = """() => {
  const pre = document.querySelector('#canvas .drawflow');
  const box = pre.getBoundingClientRect();
  const zoom = window.flowEditor && box.width / pre.offsetWidth;
  const centre = (el) => { const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; };
  const wrong = [];
  pre.querySelectorAll('svg.connection').forEach((svg) => {
    const [, into, from, output, input] = svg.classList;
    const d = (svg.firstElementChild.getAttribute('d') || '').trim().split(/[\\s,MC]+/).filter(Boolean).map(Number);
    if (d.length !== 8) { wrong.push(svg.getAttribute('class') + ': no curve'); return; }
    const ends = [[d[0], d[1]], [d[6], d[7]]].map(([x, y]) => [box.x + x * zoom, box.y + y * zoom]);
    const ports = [
      centre(document.getElementById(from.slice(9)).querySelector('.outputs .' + output)),
      centre(document.getElementById(into.slice(8)).querySelector('.inputs .' + input)),
    ];
    ends.forEach((e, i) => {
      if (Math.abs(e[0] - ports[i][0]) > 1 || Math.abs(e[1] - ports[i][1]) > 1) {
        wrong.push(svg.getAttribute('class') + ` ${i ? 'ends' : 'starts'} at ${e} not ${ports[i]}`);
      }
    });
  });
  return wrong;
}"""


def test_every_edge_joins_its_ports_when_the_flow_opens_and_while_a_step_is_dragged(
    page: Page,
) -> None:
    open_editor(page, "welcome")
    # The metrics line makes each step taller, moving its exits: the edges follow.
    expect(page.locator(".node-metrics").first).to_be_visible()
    assert page.locator("svg.connection").count() >= 14
    assert page.evaluate(EDGES_MISSING_THEIR_PORTS) == []
    # The canvas draws its edges in one pass when it is built; dragging a step is Drawflow's own
    # redrawing, which must still move the edges with the step before it is dropped.
    box = node(page, "guide").locator(".node-name").bounding_box()
    assert box
    page.mouse.move(box["x"] + 20, box["y"] + 5)
    page.mouse.down()
    page.mouse.move(box["x"] + 140, box["y"] + 65, steps=8)
    assert page.evaluate(EDGES_MISSING_THEIR_PORTS) == []
    page.mouse.up()
    wait_for_text(page, r"^    guide: -?\d+, -?\d+$")
    assert page.evaluate(EDGES_MISSING_THEIR_PORTS) == []


def test_auto_arrange_saves_the_picture_the_canvas_shows(page: Page) -> None:
    open_editor(page, "cart_abandonment")
    assert "layout {" not in text(page)
    where = (
        "() => [...document.querySelectorAll('.drawflow-node')]"
        ".map(n => [n.textContent.trim().replace(/\\s+/g, ' '), n.style.left, n.style.top])"
    )
    before = page.evaluate(where)
    page.get_by_role("button", name="Auto-arrange").click()
    expect(page.locator("#notice")).to_contain_text("Arranged")
    steps = re.findall(r"^  (\w+):", text(page), re.M)
    assert all(re.search(rf"^    {s}: -?\d+, -?\d+$", text(page), re.M) for s in steps)
    # Every step now has its saved position and no automatic layout is made: the same picture.
    assert page.evaluate(where) == before


PAGES = [
    "/flows",
    "/flows/welcome",
    "/flows/welcome/dashboard",
    "/flows/welcome/versions",
    "/leads",
    "/leads/1",
    "/lists",
    "/segments",
    "/mail",
    "/settings",
    "/f/contact_us",
]


def test_the_main_pages_have_no_serious_accessibility_violations(
    browser: Browser, base_url: str
) -> None:
    assert AXE, "axe-core is vendored in tests/web/vendor (scripts/refresh-vendor)"
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, base_url=base_url, bypass_csp=True
    )
    page = context.new_page()
    found: dict[str, list[str]] = {}
    page.goto("/login")
    found["/login"] = _axe(page)
    sign_in(page)
    for url in PAGES:
        page.goto(url)
        page.wait_for_load_state("networkidle")
        found[url] = _axe(page)
    context.close()
    problems = "\n".join(f"{url}: {v}" for url, vs in found.items() for v in vs)
    assert not problems, problems


def _axe(page: Page) -> list[str]:
    page.add_script_tag(path=str(AXE[-1]))
    result = page.evaluate(
        """async () => {
          const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
          return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => v.id + ': ' + v.help + ' — ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
        }"""
    )
    return list(result)
