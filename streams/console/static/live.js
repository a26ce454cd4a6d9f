// Live updates from the status feed (GET /ui/feed, the read API's SSE stream). The pages
// are complete without this file; it only adds rows as status changes arrive. Values are
// set with textContent, never parsed as HTML, so nothing from a webhook can run.
"use strict";

(function () {
  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text == null ? "(none)" : String(text);
    return td;
  }

  function subjectLink(t) {
    const td = document.createElement("td");
    const a = document.createElement("a");
    a.href = "/ui/verifications/" + [t.provider, t.kind, t.id].map(encodeURIComponent).join("/");
    a.textContent = t.provider + "/" + t.kind + "/" + t.id;
    td.appendChild(a);
    return td;
  }

  function erasedBadge(t) {
    // As the server-side pages mark an erased subject (macros.html, erased_badge).
    const span = document.createElement("span");
    span.className = "erased";
    span.title = "personal data erased at " + t.erased_at;
    span.textContent = "erased";
    return span;
  }

  function onOverview(table, t) {
    const body = table.tBodies[0];
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    const row = document.createElement("tr");
    row.className = "live-new";
    const subject = subjectLink(t);
    if (t.erased_at) subject.append(" ", erasedBadge(t));
    row.append(cell(t.seq), cell(t.received_at), subject, cell(t.from_status),
               cell(t.to_status), cell(t.trigger));
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 50) body.deleteRow(body.rows.length - 1);
  }

  function onTimeline(summary, t) {
    if (summary.dataset.subject !== t.provider + "/" + t.kind + "/" + t.id) return;
    const status = document.getElementById("current-status");
    status.textContent = t.to_status;
    const table = document.getElementById("transitions");
    const row = document.createElement("tr");
    row.className = "live-new";
    row.append(cell(t.version), cell((t.from_status || "(none)") + " → " + t.to_status),
               cell(t.trigger), cell(t.event_type + " @ " + t.offset), cell(t.received_at));
    table.tBodies[0].appendChild(row);
  }

  function start() {
    const recent = document.getElementById("recent");
    const summary = document.getElementById("summary");
    const anchor = recent || summary;
    if (!anchor || !window.EventSource) return;
    const state = document.getElementById("live-state");
    const source = new EventSource("/ui/feed?after=" + encodeURIComponent(anchor.dataset.feedAfter));
    source.addEventListener("open", function () { if (state) state.textContent = "(live)"; });
    source.addEventListener("error", function () { if (state) state.textContent = "(reconnecting…)"; });
    source.addEventListener("status", function (event) {
      const t = JSON.parse(event.data);
      if (recent) onOverview(recent, t);
      if (summary) onTimeline(summary, t);
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
