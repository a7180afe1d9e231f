"""A small synchronous LSP client over stdio: it starts `flowbuilder lsp` as a subprocess and speaks
JSON-RPC to it with `Content-Length` framing, as an editor does. The tests drive the server with
it, and the session shown in docs/editors.md is captured with it.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

Message = dict[str, Any]


def _read_message(stream: IO[bytes]) -> Message | None:
    length = None
    while True:
        header = stream.readline()
        if not header:
            return None
        if header in (b"\r\n", b"\n"):
            break
        name, _, value = header.decode("ascii").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        return None
    body = stream.read(length)
    message: Message = json.loads(body.decode("utf-8"))
    return message


class LspClient:
    """`with LspClient(root) as client:` starts the server, initializes it with `root` as the
    workspace folder, and shuts it down (`shutdown`, `exit`) at the end."""

    def __init__(
        self, root: Path, command: Sequence[str] | None = None, timeout: float = 60.0
    ) -> None:
        self.root = root.resolve()
        self.command = list(command or [sys.executable, "-m", "flowbuilder", "lsp"])
        self.timeout = timeout
        self._next_id = 0
        self._inbox: queue.Queue[Message | None] = queue.Queue()
        self.notifications: list[Message] = []
        self.sent: list[Message] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LspClient:
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self.root,
        )
        reader = threading.Thread(target=self._pump, name="lsp-client-reader", daemon=True)
        reader.start()
        self.initialize_result = self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": self.root.as_uri(),
                "workspaceFolders": [{"uri": self.root.as_uri(), "name": self.root.name}],
                "capabilities": {
                    "textDocument": {
                        "hover": {"contentFormat": ["markdown", "plaintext"]},
                        "completion": {"completionItem": {"snippetSupport": False}},
                        "rename": {"prepareSupport": True},
                        "publishDiagnostics": {"versionSupport": True},
                    },
                    "general": {"positionEncodings": ["utf-16"]},
                },
            },
        )
        self.notify("initialized", {})
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.process is not None
        try:
            if self.process.poll() is None:
                self.request("shutdown", None)
                self.notify("exit", None)
                self.exit_code = self.process.wait(timeout=self.timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while (message := _read_message(self.process.stdout)) is not None:
            self._inbox.put(message)
        self._inbox.put(None)

    # ------------------------------------------------------------------ messages

    def _send(self, message: Message) -> None:
        assert self.process is not None and self.process.stdin is not None
        body = json.dumps(message, ensure_ascii=False).encode("utf-8")
        self.sent.append(message)
        self.process.stdin.write(f"Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body)
        self.process.stdin.flush()

    def notify(self, method: str, params: Any) -> None:
        message: Message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)

    def _receive(self) -> Message:
        try:
            message = self._inbox.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"no message from the server in {self.timeout:.0f}s") from None
        if message is None:
            raise ConnectionError("the server closed its output")
        return message

    def request_raw(self, method: str, params: Any) -> Message:
        """Send a request; the whole response (with `result` or `error`)."""
        self._next_id += 1
        ident = self._next_id
        message: Message = {"jsonrpc": "2.0", "id": ident, "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)
        while True:
            incoming = self._receive()
            if incoming.get("id") == ident and "method" not in incoming:
                return incoming
            self._handle(incoming)

    def request(self, method: str, params: Any) -> Any:
        """Send a request and return its result; a JSON-RPC error raises `LspError`."""
        response = self.request_raw(method, params)
        if "error" in response:
            raise LspError(response["error"])
        return response.get("result")

    def _handle(self, incoming: Message) -> None:
        if "id" in incoming and "method" in incoming:
            # A request from the server (registerCapability, workDoneProgress …): accept it.
            self._send({"jsonrpc": "2.0", "id": incoming["id"], "result": None})
        else:
            self.notifications.append(incoming)

    def wait_for(self, predicate: Callable[[Message], bool]) -> Message:
        """The first notification (already received or still to come) that satisfies `predicate`;
        it is taken out of `notifications`."""
        while True:
            for i, message in enumerate(self.notifications):
                if predicate(message):
                    return self.notifications.pop(i)
            self._handle(self._receive())

    def diagnostics(self, uri: str, version: int | None = None) -> list[Message]:
        """The next diagnostics published for `uri` (for that document version, when given)."""

        def matches(message: Message) -> bool:
            if message.get("method") != "textDocument/publishDiagnostics":
                return False
            params = message["params"]
            return bool(
                params["uri"] == uri and (version is None or params.get("version") == version)
            )

        found: list[Message] = self.wait_for(matches)["params"]["diagnostics"]
        return found

    def published(self, uri: str) -> list[Message]:
        """The latest diagnostics received for `uri` so far (older ones are dropped): the server
        publishes the other files of a workspace before the document that changed."""
        found: list[Message] | None = None
        kept = []
        for message in self.notifications:
            if (
                message.get("method") == "textDocument/publishDiagnostics"
                and message["params"]["uri"] == uri
            ):
                found = message["params"]["diagnostics"]
            else:
                kept.append(message)
        self.notifications = kept
        if found is None:
            raise LookupError(f"no diagnostics were published for {uri}")
        return found

    # ------------------------------------------------------------------ documents

    def open(self, path: Path, text: str | None = None, version: int = 1) -> str:
        uri = path.resolve().as_uri()
        body = path.read_text(encoding="utf-8") if text is None else text
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "flow", "version": version, "text": body}},
        )
        return uri

    def change(self, uri: str, text: str, version: int) -> None:
        self.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"text": text}],
            },
        )


class LspError(Exception):
    """A JSON-RPC error response."""

    def __init__(self, error: Message) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = str(error.get("message"))


def position(text: str, needle: str, offset: int = 0, occurrence: int = 1) -> dict[str, int]:
    """The LSP position (0-based, UTF-16) `offset` characters into the n-th occurrence of `needle`."""
    at = -1
    for _ in range(occurrence):
        at = text.index(needle, at + 1)
    at += offset
    line = text.count("\n", 0, at)
    start = text.rfind("\n", 0, at) + 1
    character = len(text[start:at].encode("utf-16-le")) // 2
    return {"line": line, "character": character}
