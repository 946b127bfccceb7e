// hookwise dashboard: live updates of the events list. New events arrive from the server as
// server-sent events (JSON rows); each becomes a table row built with textContent, so nothing
// an event carries is ever read as HTML.
"use strict";

(function () {
  var body = document.getElementById("events");
  var status = document.getElementById("live-status");
  if (!body || !body.dataset.stream) {
    return;
  }
  var MAX_ROWS = 500; // rows kept on the page; older ones are on the next pages

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function row(e) {
    var tr = document.createElement("tr");
    tr.dataset.seq = String(e.seq);
    tr.className = "new";
    var time = document.createElement("time");
    time.textContent = new Date(e.received_at).toISOString().replace(/\.\d+Z$/, "Z");
    var when = document.createElement("td");
    when.appendChild(time);
    tr.appendChild(when);
    tr.appendChild(cell(e.source));
    tr.appendChild(cell(e.event_type));
    var badge = document.createElement("span");
    badge.className = "outcome " + e.outcome;
    badge.textContent = e.outcome;
    var outcome = document.createElement("td");
    outcome.appendChild(badge);
    tr.appendChild(outcome);
    var link = document.createElement("a");
    link.href = "/events/" + encodeURIComponent(e.id);
    link.textContent = e.id;
    var id = document.createElement("td");
    id.appendChild(link);
    tr.appendChild(id);
    return tr;
  }

  var source = new EventSource(body.dataset.stream);
  source.addEventListener("event", function (message) {
    var e;
    try {
      e = JSON.parse(message.data);
    } catch (_) {
      return;
    }
    var empty = body.querySelector("tr.empty");
    if (empty) {
      empty.remove();
    }
    body.insertBefore(row(e), body.firstChild);
    while (body.rows.length > MAX_ROWS) {
      body.deleteRow(body.rows.length - 1);
    }
  });
  source.addEventListener("gap", function () {
    status.textContent = "More events arrived than shown live; reload to see them all.";
  });
  source.addEventListener("signed-out", function () {
    source.close();
    status.textContent = "Signed out: live updates stopped.";
  });
})();
