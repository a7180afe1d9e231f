// flowbuilder: what every page shares — the CSRF header on every htmx and fetch request.
(function () {
  "use strict";

  function cookie(name) {
    const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  function csrf() {
    return cookie("csrftoken");
  }

  async function send(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrftoken": csrf(), accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = { error: `The server answered ${response.status} ${response.statusText}.` };
    }
    if (response.status === 401) {
      window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname);
    }
    return { status: response.status, ok: response.ok, data, headers: response.headers };
  }

  window.fb = { csrf, send };

  document.addEventListener("htmx:configRequest", (event) => {
    event.detail.headers["x-csrftoken"] = csrf();
  });
})();
