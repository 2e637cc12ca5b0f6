// dockyard dashboard: the workspace selector and a run's live log (server-sent events).
// Everything else is plain HTML and htmx attributes.
"use strict";

function autosubmit() {
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
}

function clock(iso) {
  return iso ? iso.substring(11, 19) : "        ";
}

function appendLines(log, lines) {
  var nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  var fragment = document.createDocumentFragment();
  lines.forEach(function (line) {
    var row = document.createElement("span");
    row.className = "ln " + (line.s || "out");
    var time = document.createElement("span");
    time.className = "t";
    time.textContent = clock(line.t);
    row.appendChild(time);
    row.appendChild(document.createTextNode(line.m + "\n"));  // text, never HTML
    fragment.appendChild(row);
  });
  log.appendChild(fragment);
  while (log.childNodes.length > 20000) { log.removeChild(log.firstChild); }
  if (nearBottom) { log.scrollTop = log.scrollHeight; }
}

function followLog() {
  var log = document.getElementById("log");
  if (!log || !window.EventSource) { return; }
  var state = document.getElementById("log-state");
  var count = 0;
  var source = new EventSource(log.dataset.stream);
  source.addEventListener("lines", function (event) {
    var lines = JSON.parse(event.data);
    count += lines.length;
    appendLines(log, lines);
    log.dataset.lines = String(count);
    if (state) { state.textContent = "following the log live · " + count + " lines"; }
  });
  source.addEventListener("end", function (event) {
    source.close();
    var status = JSON.parse(event.data).status;
    log.dataset.ended = status;
    if (state) { state.textContent = "run " + status + " · " + count + " lines"; }
    document.body.dispatchEvent(new CustomEvent("dockyard:ended"));
  });
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED && state) {
      state.textContent = "the log stream stopped; reload the page to follow it again";
    }
  };
}

// a failed run's traceback: its end (the exception, the workspace's frame) is what matters
function tracebackEnd() {
  document.querySelectorAll("pre.traceback").forEach(function (pre) {
    pre.scrollTop = pre.scrollHeight;
  });
}

document.addEventListener("DOMContentLoaded", function () {
  autosubmit();
  followLog();
  tracebackEnd();
});
document.addEventListener("htmx:afterSwap", tracebackEnd);
