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
      if (window.vidjobsConsole.tasks) window.vidjobsConsole.tasks.refresh();
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
    return show;
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

  // --- the job page's tasks graph: poll the tasks' status until the job ends ---
  function tasksGraph(list, showJob) {
    const items = new Map([...list.querySelectorAll("li[data-task]")].map((li) => [li.dataset.task, li]));
    const field = (li, name) => li.querySelector("[data-field=" + name + "]");
    let timer = null;
    let busy = false;
    async function poll() {
      if (busy) return;
      busy = true;
      clearTimeout(timer);
      timer = null;
      let body = null;
      try {
        const r = await fetch(list.dataset.live, { credentials: "same-origin" });
        if (r.ok) body = await r.json();
      } catch (err) { /* the next poll tries again */ }
      if (body) {
        for (const t of body.tasks) {
          const li = items.get(t.name);
          if (!li) continue;
          const s = field(li, "status");
          if (s.textContent !== t.status) setStatus(s, t.status);
          field(li, "progress").value = t.progress;
          field(li, "progress-text").textContent = Math.round(t.progress * 100) + "%";
          field(li, "attempts").textContent = t.attempts + " of " + t.max_attempts;
          field(li, "error").textContent = t.error ? t.error.code + ": " + t.error.message : "";
        }
        if (showJob) showJob(body.status, body.progress);
      }
      busy = false;
      if (!body || !TERMINAL.includes(body.status)) timer = setTimeout(poll, 1500);
    }
    timer = setTimeout(poll, 1500);
    // A retry (or any live status change of the job) starts polling again.
    return { refresh: () => { if (timer === null && !busy) poll(); } };
  }

  // --- the job page's package player: hls.js (or native HLS) on the signed playback URL ---
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function vttTime(text) {
    const parts = text.trim().split(":").map(Number);
    return parts.reduce((acc, p) => acc * 60 + p, 0);
  }

  // The sprites' WebVTT index: cues of "start --> end" and "sheet.jpg#xywh=x,y,w,h".
  function parseVtt(text, base) {
    const cues = [];
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      if (!lines[i].includes("-->")) continue;
      const [a, b] = lines[i].split("-->");
      const ref = (lines[i + 1] || "").trim();
      const m = /#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(ref);
      if (!m) continue;
      cues.push({ start: vttTime(a), end: vttTime(b), url: new URL(ref.slice(0, m.index), base).href,
                  x: +m[1], y: +m[2], w: +m[3], h: +m[4] });
    }
    return cues;
  }

  async function scrubbing(video, vttUrl) {
    const range = document.getElementById("scrub");
    const preview = document.getElementById("scrub-preview");
    const time = document.getElementById("scrub-time");
    const r = await fetch(vttUrl);
    if (!r.ok) return;
    const cues = parseVtt(await r.text(), vttUrl);
    if (!cues.length) return;
    const duration = () => video.duration || cues[cues.length - 1].end;
    const cueAt = (t) => cues.find((c) => t >= c.start && t < c.end) || cues[cues.length - 1];
    function show(t) {
      const c = cueAt(t);
      preview.style.width = c.w + "px";
      preview.style.height = c.h + "px";
      preview.style.backgroundImage = "url(\"" + c.url + "\")";
      preview.style.backgroundPosition = -c.x + "px " + -c.y + "px";
      preview.style.left = Math.min(range.clientWidth - c.w, Math.max(0, range.clientWidth * t / duration() - c.w / 2)) + "px";
      preview.hidden = false;
      time.textContent = clock(t);
    }
    const at = () => (range.value / 1000) * duration();
    range.addEventListener("input", () => show(at()));
    range.addEventListener("change", () => { video.currentTime = at(); preview.hidden = true; });
    range.addEventListener("blur", () => { preview.hidden = true; });
    range.addEventListener("pointerleave", () => { preview.hidden = true; });
    range.addEventListener("pointermove", (e) => {
      const rect = range.getBoundingClientRect();
      show(Math.max(0, Math.min(1, (e.clientX - rect.left) / rect.width)) * duration());
    });
    video.addEventListener("timeupdate", () => {
      if (document.activeElement !== range) range.value = String(Math.round(1000 * video.currentTime / duration()));
    });
    // The poster: the first thumbnail, cut out of its sprite sheet.
    const first = cues[0];
    const img = new Image();
    img.crossOrigin = "anonymous";
    img.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = first.w;
      canvas.height = first.h;
      canvas.getContext("2d").drawImage(img, first.x, first.y, first.w, first.h, 0, 0, first.w, first.h);
      if (!video.poster) video.poster = canvas.toDataURL("image/jpeg");
    };
    img.src = first.url;
  }

  function player(root) {
    const video = document.getElementById("package-player");
    const message = document.getElementById("playback-message");
    const src = root.dataset.src;
    let hls = null;
    let dash = null;
    if (root.dataset.kind === "dash") {  // a DASH-only package: dash.js
      if (window.dashjs && (window.MediaSource || window.ManagedMediaSource)) {
        dash = window.dashjs.MediaPlayer().create();
        dash.on("error", (e) => { message.textContent = "Playback failed (" + ((e.error && e.error.message) || "DASH error") + "); the signed URL may have expired: reload the page."; });
        dash.initialize(video, src, false);
      } else {
        message.textContent = "This browser has no Media Source Extensions: use the manifest links below.";
      }
    } else if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls();
      hls.on(window.Hls.Events.ERROR, (_, d) => {
        if (d.fatal) message.textContent = "Playback failed (" + d.type + ": " + d.details + "); the signed URL may have expired: reload the page.";
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src;  // Safari plays HLS itself
    } else {
      message.textContent = "This browser has no Media Source Extensions: use the manifest links below.";
    }
    if (root.dataset.thumbnails) scrubbing(video, root.dataset.thumbnails).catch(() => {});
    return { video, hls, dash };
  }

  // The tasks graph and the package player (job.html, HOOK(tasks) and HOOK(playback)).
  window.vidjobsConsole = { tasks: null, playback: null, terminal: TERMINAL };

  const job = document.getElementById("job");
  const showJob = job ? jobPage(job) : null;
  const tasks = document.querySelector("ol#tasks[data-live]");
  if (tasks) window.vidjobsConsole.tasks = tasksGraph(tasks, showJob);
  const playback = document.getElementById("playback");
  // hls.min.js is a deferred script after this one: start the player once it has run.
  if (playback) document.addEventListener("DOMContentLoaded", () => { window.vidjobsConsole.playback = player(playback); });
  const table = document.getElementById("jobs-table");
  if (table) jobsPage(table);
})();
