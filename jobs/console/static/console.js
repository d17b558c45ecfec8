// The vidjobs console's own script: live status on the jobs and job pages, cancel/retry
// without a reload, select-all. Every page works without it (plain forms and links).
"use strict";
(function () {
  const csrf = document.body.dataset.csrf || "";
  const TERMINAL = ["succeeded", "failed", "cancelled"];

  function setStatus(el, status) {
    el.textContent = status;
    el.className = "status s-" + status;
  }

  // --- the job page: the job's Server-Sent Events stream (events and progress) ---
  function jobPage(root) {
    const status = document.getElementById("job-status");
    const bar = document.getElementById("job-progress");
    const text = document.getElementById("job-progress-text");
    const events = document.getElementById("events");
    const cancel = document.getElementById("cancel");
    const retry = document.getElementById("retry");
    const message = document.getElementById("action-message");
    const seen = new Set([...events.querySelectorAll("li")].map((li) => li.dataset.eventId));

    function show(state, progress) {
      setStatus(status, state);
      cancel.disabled = !["pending", "running"].includes(state);
      retry.disabled = !["failed", "cancelled"].includes(state);
      if (typeof progress === "number") {
        bar.value = progress;
        text.textContent = Math.round(progress * 100) + "%";
      }
    }

    let source = null;
    function follow() {
      if (source) source.close();
      source = new EventSource(root.dataset.stream);
      source.onmessage = null;
      source.addEventListener("progress", (e) => {
        const d = JSON.parse(e.data);
        show(d.status, d.progress);
      });
      const onEvent = (e) => {
        const d = JSON.parse(e.data);
        if (d.data && d.data.status) show(d.data.status, d.data.status === "succeeded" ? 1 : undefined);
        if (seen.has(d.event_id)) return;
        seen.add(d.event_id);
        const li = document.createElement("li");
        const t = document.createElement("time");
        t.textContent = (d.created_at || "").replace("T", " ").slice(0, 19);
        const b = document.createElement("strong");
        b.textContent = d.type;
        li.append(t, " ", b);
        events.append(li);
      };
      ["job.submitted", "job.resubmitted", "job.claimed", "job.succeeded", "job.failed",
       "job.retry_scheduled", "job.requeued", "job.cancel_requested", "job.cancelled"]
        .forEach((type) => source.addEventListener(type, onEvent));
      // The stream ends with the job; a retry starts a new run, so follow again then.
      source.onerror = () => { source.close(); source = null; };
    }
    follow();

    root.parentElement.querySelectorAll("form[data-live]").forEach((form) => {
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        message.textContent = "";
        const r = await fetch(form.action, {
          method: "POST", headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
          credentials: "same-origin",
        });
        const body = await r.json().catch(() => ({}));
        if (!r.ok) {
          message.textContent = (body.error && body.error.message) || ("failed: HTTP " + r.status);
          return;
        }
        show(body.status, body.progress);
        message.textContent = "Job is now " + body.status + (body.cancel_requested ? " (cancel requested)" : "") + ".";
        if (!source) follow();
      });
    });
  }

  // --- the jobs page: poll the status of the listed jobs ---
  function jobsPage(table) {
    const rows = new Map([...table.querySelectorAll("tbody tr[data-id]")].map((tr) => [tr.dataset.id, tr]));
    const all = document.getElementById("select-all");
    if (all) all.addEventListener("change", () => {
      table.querySelectorAll("tbody input[type=checkbox]").forEach((c) => { c.checked = all.checked; });
    });
    if (!rows.size) return;
    const note = document.getElementById("live-note");
    async function poll() {
      try {
        const r = await fetch("/console/jobs/live?ids=" + [...rows.keys()].join(","), { credentials: "same-origin" });
        if (r.ok) {
          const body = await r.json();
          for (const j of body.jobs) {
            const tr = rows.get(String(j.id));
            if (!tr) continue;
            const s = tr.querySelector("[data-field=status]");
            if (s.textContent !== j.status) setStatus(s, j.status);
            tr.querySelector("[data-field=progress]").value = j.progress;
          }
          note.textContent = "";
        }
      } catch (err) {
        note.textContent = "Live updates paused (connection lost).";
      }
      setTimeout(poll, 2000);
    }
    setTimeout(poll, 2000);
  }

  // Hooks for the tasks graph and the HLS/DASH player (see job.html, HOOK(tasks) and
  // HOOK(playback)); the branches that add those endpoints fill these in.
  window.vidjobsConsole = { tasks: null, playback: null, terminal: TERMINAL };

  const job = document.getElementById("job");
  if (job) jobPage(job);
  const table = document.getElementById("jobs-table");
  if (table) jobsPage(table);
})();
