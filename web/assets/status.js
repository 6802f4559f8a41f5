// The status page, live: follows GET /status/events (each machine's status as it changes) and updates the
// cards in place: the activity's colour and name, since when and for how long, the job, the operator and
// "No signal". A change that alters a card's forms (a job started or ended, a tablet's operator) reloads
// the page, unless someone is filling in a form. Without this script the page shows the state as loaded.
(function () {
  "use strict";
  var board = document.getElementById("board");
  if (!board || !window.EventSource) return;
  var highlightMs = Number(board.getAttribute("data-highlight-minutes") || 0) * 60000;

  function lasted(ms) {
    var minutes = Math.max(0, Math.floor(ms / 60000));
    return minutes < 60 ? minutes + " min" : Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function text(card, selector, value) {
    var el = card.querySelector(selector);
    if (el) el.textContent = value;
  }

  function busy() {
    var a = document.activeElement;
    return !!(a && a.form && board.contains(a));
  }

  function age(card) {
    var since = Date.parse(card.getAttribute("data-since"));
    if (isNaN(since)) return;
    var ms = Date.now() - since;
    text(card, ".lasted", lasted(ms));
    card.classList.toggle("long", highlightMs > 0 && ms > highlightMs);
  }

  function show(s) {
    var card = document.getElementById("machine-" + s.machine_id);
    if (!card) return;
    var job = s.job_id == null ? "" : String(s.job_id);
    var tablet = s.logout_tablet == null ? "" : String(s.logout_tablet);
    if (card.getAttribute("data-job") !== job || card.getAttribute("data-tablet") !== tablet) {
      if (!busy()) {
        window.location.reload();
        return;
      }
      card.classList.add("stale");
    }
    card.className = card.className.replace(/\bcode-\d+\b/g, "").replace(/\s+/g, " ").trim() + " code-" + s.code_id;
    card.classList.toggle("no-signal", !!s.no_signal);
    card.setAttribute("data-since", s.since);
    text(card, ".code-name", s.code);
    text(card, ".since", s.since_local);
    text(card, ".job", s.job_number || "No job");
    text(card, ".user", s.user || "None");
    var choice = card.querySelector('select[name="activity_code"]');
    if (choice && document.activeElement !== choice) {
      Array.prototype.forEach.call(choice.options, function (o) {
        o.selected = o.value === String(s.code_id);
      });
    }
    age(card);
  }

  var source = new EventSource("/status/events");
  source.addEventListener("status", function (e) {
    try {
      show(JSON.parse(e.data));
    } catch (err) {
      // A status this page cannot read: the next reload shows it.
    }
  });
  source.addEventListener("reload", function () {
    if (!busy()) window.location.reload();
  });
  source.addEventListener("open", function () {
    board.setAttribute("data-live", "on");
  });
  source.addEventListener("error", function () {
    // The browser reconnects by itself; the server then sends every machine's status again.
    board.setAttribute("data-live", "off");
  });
  window.setInterval(function () {
    Array.prototype.forEach.call(board.querySelectorAll(".machine"), age);
  }, 30000);
})();
