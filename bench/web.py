"""The web app: opening a 300-step flow in the browser, and the server time of one edit.

- **open**: Chromium loads the editor of a generated 300-step flow until the last step is drawn
  on the canvas, against the same page for a 14-step flow (the welcome example) — how the canvas
  scales with the size of a flow. Goal: at most 8× for 21× the steps.
- **edit**: the server's answer to one rename on the 300-step flow (`POST /api/flows/big/ops`:
  check the revision, apply the edit, store the text and its history, compile and lint the
  workspace, build the canvas model), against `dsl.edit.apply` of the same edit on the same text —
  what the web layer costs around the edit itself. Goal: at most 25×.

Run: `python -m bench.web` (Debian's Chromium at /usr/bin/chromium for the first row).
"""

from __future__ import annotations

import shutil
import socket
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.flows import generated_flow
from bench.table import Row, best_of, print_rows
from dsl.edit import RenameStep, apply, revision

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
NO_CHROMIUM = (
    "the browser tests drive Debian's Chromium at /usr/bin/chromium; install it with "
    "scripts/system-packages (make test does)"
)
# How the benchmark and the browser tests launch it: headless in a container, nothing fetched.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL = "bench@example.com"
PASSWORD = "bench password 1"


def _workspace(folder: Path) -> Path:
    """The example workspace plus a generated 300-step flow."""
    target = folder / "workspace"
    shutil.copytree(ROOT / "examples" / "acme", target)
    text = (
        generated_flow(300)
        .replace("template mail {", "template bench_mail {")
        .replace("send mail", "send bench_mail")
    )
    (target / "big.flow").write_text(text, encoding="utf-8")
    return target


def _serve(folder: Path) -> tuple[str, object, threading.Thread]:
    import uvicorn

    from flowbuilder import drafts
    from flowbuilder.config import Settings
    from flowbuilder.store.db import open_store
    from flowbuilder.users import add_user
    from web.app import create_app

    settings = Settings(
        database_url=f"sqlite:///{folder / 'bench.db'}",
        data_dir=folder,
        secret_key="bench-" + "x" * 40,
        workspace=_workspace(folder),
    )
    engine = open_store(settings.database_url)
    now = datetime.now(UTC)
    assert settings.workspace is not None
    drafts.seed(engine, settings.workspace, now)
    add_user(engine, EMAIL, PASSWORD, now)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def _open_rows(base: str) -> list[Row]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{base}/login")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/flows")

        def opening(flow: str, last: str) -> float:
            times = []
            for _ in range(4):
                start = time.perf_counter()
                page.goto(f"{base}/flows/{flow}")
                page.wait_for_selector(f'.node-body[data-step="{last}"]', timeout=60_000)
                times.append(time.perf_counter() - start)
            return statistics.median(times[1:])

        big = opening("big", "s299")
        small = opening("welcome", "done")
        browser.close()
    return [
        Row(
            "open a 300-step flow in the editor (Chromium)",
            big,
            "the 14-step welcome flow",
            small,
            "≤ 8×",
            big / small <= 8,
        )
    ]


def _edit_rows(base: str) -> list[Row]:
    import httpx

    text = (
        generated_flow(300)
        .replace("template mail {", "template bench_mail {")
        .replace("send mail", "send bench_mail")
    )
    names = iter(range(10_000))

    def library() -> None:
        apply(
            text, RenameStep(flow="big", old="s150", new=f"renamed_{next(names)}"), revision(text)
        )

    with httpx.Client(base_url=base) as client:
        client.get("/login")
        token = client.cookies["csrftoken"]
        client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrftoken": token})
        state = {"rev": client.get("/api/flows/big").json()["revision"], "old": "s150"}

        def server_edit() -> None:
            new = f"step_{next(names)}"
            op = {"op": "rename_step", "flow": "big", "old": state["old"], "new": new}
            answer = client.post(
                "/api/flows/big/ops",
                json={"revision": state["rev"], "ops": [op]},
                headers={"x-csrftoken": token},
            )
            answer.raise_for_status()
            state["rev"], state["old"] = answer.json()["revision"], new

        edit = best_of(server_edit, repeat=7)
    reference = best_of(library, repeat=7)
    return [
        Row(
            "server time of one edit on a 300-step flow (HTTP, store, lint, model)",
            edit,
            "dsl.edit.apply of the same edit",
            reference,
            "≤ 25×",
            edit / reference <= 25,
        )
    ]


def rows() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        base, server, thread = _serve(Path(tmp))
        try:
            out = _open_rows(base) if CHROMIUM.exists() else []
            out += _edit_rows(base)
        finally:
            server.should_exit = True  # type: ignore[attr-defined]
            thread.join(timeout=15)
    return out


if __name__ == "__main__":
    print_rows(rows(), "web app")
