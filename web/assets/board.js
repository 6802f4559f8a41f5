// The andon board, live: follows the stream named by the board's data-events (each machine's status as it
// changes) and updates the tiles in place: the activity's colour and name, how long it has lasted, the job,
// the operator and "No signal". The whole page is read again every five minutes so that today's OEE moves
// on, and a group timeline (data-refresh-seconds) is read again as often as it asks. Without this script
// the board shows the state as loaded, with a Reload link.
(function () {
  "use strict";
  var timeline = document.getElementById("timeline");
  if (timeline) {
    var seconds = Number(timeline.getAttribute("data-refresh-seconds") || 0);
    if (seconds > 0) window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
  }
  var board = document.getElementById("board");
  if (!board || !board.getAttribute("data-events")) return;
  var highlightMs = Number(board.getAttribute("data-highlight-minutes") || 0) * 60000;
  window.setTimeout(function () { window.location.reload(); }, 5 * 60000);
  if (!window.EventSource) return;

  function lasted(ms) {
    var minutes = Math.max(0, Math.floor(ms / 60000));
    return minutes < 60 ? minutes + " min" : Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function text(tile, selector, value) {
    var el = tile.querySelector(selector);
    if (el) el.textContent = value;
  }

  function age(tile) {
    var since = Date.parse(tile.getAttribute("data-since"));
    if (isNaN(since)) return;
    var ms = Date.now() - since;
    text(tile, ".lasted", lasted(ms));
    tile.classList.toggle("long", highlightMs > 0 && ms > highlightMs);
  }

  function show(s) {
    var tile = document.getElementById("machine-" + s.machine_id);
    if (!tile) return;
    tile.className = tile.className.replace(/\bcode-\d+\b/g, "").replace(/\s+/g, " ").trim() + " code-" + s.code_id;
    tile.classList.toggle("no-signal", !!s.no_signal);
    tile.setAttribute("data-since", s.since);
    text(tile, ".code-name", s.code);
    text(tile, ".since", s.since_local);
    text(tile, ".job", s.job_number || "No job");
    text(tile, ".user", s.user || "None");
    age(tile);
  }

  var source = new EventSource(board.getAttribute("data-events"));
  source.addEventListener("status", function (e) {
    try {
      show(JSON.parse(e.data));
    } catch (err) {
      // A status this board cannot read: the next reload shows it.
    }
  });
  source.addEventListener("reload", function () {
    window.location.reload();
  });
  source.addEventListener("open", function () {
    board.setAttribute("data-live", "on");
    document.body.classList.remove("not-live");
  });
  source.addEventListener("error", function () {
    // The browser reconnects by itself; a revoked link's stream sends `reload` before it ends.
    board.setAttribute("data-live", "off");
    document.body.classList.add("not-live");
  });
  window.setInterval(function () {
    Array.prototype.forEach.call(board.querySelectorAll(".tile"), age);
  }, 30000);
})();
