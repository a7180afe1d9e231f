"""Settings every test shares."""

from __future__ import annotations

import os

# Commands the tests start (`flowbuilder run`, `serve`) capture mail in the built-in sink; each
# takes a free port rather than the default, so that tests running side by side never collide.
os.environ.setdefault("FLOWBUILDER_SINK_LISTEN", "127.0.0.1:0")
