/* flowbuilder Pulse: how far and how long a tracked page is read.
 *
 * <script src="https://<flowbuilder>/static/pulse/pulse.js" defer></script>
 *
 * Runs only when the page was opened through a tracked link (the `fbv` view token in its URL),
 * and takes the token out of the address bar so it is not bookmarked or shared. Measures the
 * read depth (the share of the page that has been on screen, 0-100) and the seconds the page was
 * visible, and sends them as heartbeats while it is visible, when it is hidden, and a final
 * beacon when the reader leaves. Stores nothing in the browser and sets no cookie.
 *
 * Options on the script tag: data-endpoint (the flowbuilder address, default: where this script
 * comes from), data-interval (seconds between heartbeats, default 15, at least 1).
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var params = new URLSearchParams(window.location.search);
  var token = params.get("fbv");
  if (!token || !script) {
    return;
  }
  if (window.history && window.history.replaceState) {
    params.delete("fbv");
    var query = params.toString();
    window.history.replaceState(
      window.history.state,
      "",
      window.location.pathname + (query ? "?" + query : "") + window.location.hash
    );
  }
  var base = script.getAttribute("data-endpoint") || new URL(script.src, window.location.href).origin;
  var endpoint = base.replace(/\/+$/, "") + "/pulse/v/" + encodeURIComponent(token);
  var every = Math.max(1, Number(script.getAttribute("data-interval")) || 15) * 1000;

  var visibleSince = document.visibilityState === "visible" ? performance.now() : null;
  var visibleBefore = 0; // milliseconds visible before `visibleSince`
  var depth = 0;
  var finished = false;

  function seconds() {
    var now = visibleSince === null ? 0 : performance.now() - visibleSince;
    return (visibleBefore + now) / 1000;
  }

  function measure() {
    var root = document.documentElement;
    var body = document.body;
    var height = Math.max(root.scrollHeight, body ? body.scrollHeight : 0);
    var bottom = (window.scrollY || root.scrollTop || 0) + window.innerHeight;
    var reached = height > 0 ? Math.min(100, (bottom / height) * 100) : 100;
    if (reached > depth) {
      depth = reached;
    }
  }

  function send(final) {
    if (finished) {
      return;
    }
    measure();
    finished = final;
    var body = JSON.stringify({
      depth: Math.round(depth * 10) / 10,
      seconds: Math.round(seconds() * 10) / 10,
      final: final
    });
    // A string goes as text/plain: a simple request, so no preflight, and it survives unload.
    if (navigator.sendBeacon && navigator.sendBeacon(endpoint, body)) {
      return;
    }
    if (window.fetch) {
      window
        .fetch(endpoint, {
          method: "POST",
          body: body,
          keepalive: true,
          credentials: "omit",
          headers: { "Content-Type": "text/plain" }
        })
        .catch(function () {});
    }
  }

  var pending = false;
  window.addEventListener(
    "scroll",
    function () {
      if (!pending) {
        pending = true;
        window.requestAnimationFrame(function () {
          pending = false;
          measure();
        });
      }
    },
    { passive: true }
  );
  window.addEventListener("resize", measure, { passive: true });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      if (visibleSince === null) {
        visibleSince = performance.now();
      }
    } else if (visibleSince !== null) {
      visibleBefore += performance.now() - visibleSince;
      visibleSince = null;
      send(false);
    }
  });
  window.addEventListener("pagehide", function () {
    send(true);
  });
  window.setInterval(function () {
    if (document.visibilityState === "visible") {
      send(false);
    }
  }, every);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      send(false);
    });
  } else {
    send(false);
  }
})();
