// faceindex web UI: a little progressive enhancement over server-rendered pages. No framework, no CDN.
"use strict";

/** The session's CSRF token: every state-changing request made with the session cookie must carry it. */
function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

/** Call the JSON API with the session cookie; throws Error(message) with the API's error message. */
async function api(method, url, body) {
  const options = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken(), Accept: "application/json" } };
  if (body instanceof FormData) {
    options.body = body;
  } else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    throw new Error(data && data.error ? data.error.message : response.status + " " + response.statusText);
  }
  return data;
}

/** Turn a form into the request: fields marked data-path fill {name} in the URL; the rest go in the body. */
function formRequest(form) {
  let url = form.dataset.api;
  const data = new FormData(form);
  for (const el of form.querySelectorAll("[data-path]")) {
    url = url.replace("{" + el.name + "}", encodeURIComponent(el.value));
    data.delete(el.name);
  }
  if (form.dataset.body === "form") return { url, body: data };
  if (form.dataset.body !== "json") return { url, body: undefined };
  const json = {};
  for (const el of form.elements) {
    if (!el.name || el.dataset.path !== undefined || el.type === "submit") continue;
    if (el.type === "checkbox") { json[el.name] = el.checked; continue; }  // its value is "on" either way
    const value = el.value.trim();
    if (value === "") continue;
    if (el.dataset.type === "number") json[el.name] = Number(value);
    else if (el.dataset.type === "list") json[el.name] = value.split(",").map((s) => s.trim()).filter(Boolean);
    else if (el.dataset.type === "numbers") json[el.name] = value.split(/[\s,]+/).filter(Boolean).map(Number);
    else json[el.name] = value;
  }
  return { url, body: json };
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!form.dataset || !form.dataset.api) return;
  event.preventDefault();
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
  if (form.dataset.then === "plan") clearPlan(form);  // a new request ends the old plan, even if this one fails
  const error = form.querySelector("[data-error]");
  if (error) error.textContent = "";
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const { url, body } = formRequest(form);
    const result = await api(form.dataset.method || "POST", url, body);
    const then = form.dataset.then || "reload";
    if (then.startsWith("redirect:")) window.location.assign(then.slice(9));
    else if (then === "select-created") window.location.assign(window.location.pathname + "?selected=" + encodeURIComponent(result.id));
    else if (then.startsWith("select:")) {  // stay on the collection just used, so the next upload goes there too
      window.location.assign(window.location.pathname + "?selected=" + encodeURIComponent(form.elements[then.slice(7)].value));
    }
    else if (then === "show-key") showKey(result);
    else if (then === "report") showReport(form, result);
    else if (then === "plan") showPlan(form, result);
    else window.location.reload();
  } catch (e) {
    if (error) error.textContent = e.message; else window.alert(e.message);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
});

function showKey(result) {
  const box = document.getElementById("new-key");
  box.querySelector("[data-secret]").textContent = result.key;
  box.hidden = false;
}

/** Render a JSON answer (e.g. an access report) into the form's [data-report] element as readable text. */
function showReport(form, result) {
  const target = document.getElementById(form.dataset.report);
  if (!target) return;
  target.hidden = false;
  target.querySelector("pre").textContent = JSON.stringify(result, null, 2);
}

/** One face of an erasure plan: its crop, id, score (with FMR when calibrated), collection and file name. */
function matchItem(m) {
  const item = document.createElement("li");
  const img = document.createElement("img");
  img.src = "/api/v1/faces/" + m.face_id + "/crop?size=160";
  img.alt = "face " + m.face_id;
  const text = document.createElement("div");
  const name = m.path.split("/").pop().replace(/^[0-9a-f]{16}-/, "");  // uploads carry a content-hash prefix
  text.textContent = "face #" + m.face_id + " · score " + m.score.toFixed(3) +
    (m.fmr !== null && m.fmr !== undefined ? " (FMR " + m.fmr.toExponential(1) + ")" : "") + " · " + m.collection +
    " · " + name + (m.via ? " · found via face #" + m.via : "");
  item.append(img, text);
  return item;
}

/** Hide a shown erasure plan and its confirm button (the server has dropped it too: see PendingPlans). */
function clearPlan(form) {
  const box = document.getElementById(form.dataset.report);
  if (!box) return;
  box.hidden = true;
  box.querySelector("pre").textContent = "";
  box.querySelector("[data-matches]").replaceChildren();
  box.querySelector("[data-also-list]").replaceChildren();
  box.querySelector("[data-also]").hidden = true;
  const button = box.querySelector("[data-confirm-plan]");
  button.hidden = true;
  button.onclick = null;
  box.querySelector("[data-error]").textContent = "";
}

/** Show an erasure plan (counts and, for a selfie, each matching face) and a button that confirms it. */
function showPlan(form, plan) {
  const box = document.getElementById(form.dataset.report);
  box.hidden = false;
  box.querySelector("pre").textContent = "Would erase " + plan.faces + " face(s), " + plan.images + " image(s), " +
    plan.collections + " collection(s), " + plan.subjects + " subject(s)" +
    (plan.people ? ", " + plan.people + " person record(s) with their names" : "") +
    ". Nothing is deleted until you confirm.";
  const list = box.querySelector("[data-matches]");
  list.replaceChildren(...plan.matches.map(matchItem));
  const also = plan.also_found_by_search || [];
  box.querySelector("[data-also-list]").replaceChildren(...also.map(matchItem));
  box.querySelector("[data-also]").hidden = also.length === 0;
  const button = box.querySelector("[data-confirm-plan]");
  const error = box.querySelector("[data-error]");
  button.hidden = plan.faces + plan.images + plan.collections + plan.subjects + (plan.people || 0) === 0;
  button.onclick = async () => {
    if (!window.confirm("Erase permanently? This cannot be undone.")) return;
    button.disabled = true;
    try {
      const result = await api("POST", "/api/v1/erasures/plans/" + encodeURIComponent(plan.plan_id));
      box.querySelector("pre").textContent = "Erased: " + JSON.stringify(result, null, 2);
      list.replaceChildren();
      box.querySelector("[data-also]").hidden = true;
      button.hidden = true;
    } catch (e) { error.textContent = e.message; } finally { button.disabled = false; }
  };
}

/** Poll running ingest jobs and move their progress bars; reload once all are finished to show counts. */
function pollJobs() {
  const running = Array.from(document.querySelectorAll("[data-job]"))
    .filter((el) => el.dataset.status === "queued" || el.dataset.status === "running");
  if (!running.length) return;
  let changed = false;
  Promise.all(running.map(async (el) => {
    try {
      const job = await api("GET", "/api/v1/jobs/" + encodeURIComponent(el.dataset.job));
      const bar = el.querySelector("progress");
      if (job.total !== null) { bar.max = Math.max(job.total, 1); bar.value = job.done; }
      el.querySelector(".job-status").textContent = job.status + (job.total !== null ? " · " + job.done + "/" + job.total + " files" : "")
        + (job.video ? " · video " + job.video.name + " " + job.video.done + (job.video.duration ? " / " + job.video.duration : "") : "");
      if (job.status !== el.dataset.status) changed = true;
      el.dataset.status = job.status;
    } catch (e) { el.dataset.status = "unknown"; }
  })).then(() => {
    const stillRunning = Array.from(document.querySelectorAll("[data-job]"))
      .some((el) => el.dataset.status === "queued" || el.dataset.status === "running");
    if (!stillRunning && changed) window.location.reload();
    else window.setTimeout(pollJobs, 700);
  });
}

/** The drop zone of the search pages: drag photos in, or pick them, and see local previews (never uploaded until
 * Search). With `multiple` (several photos of one person) every photo is previewed and more than data-max is named
 * at once; the server refuses them too. */
function setupDropzone() {
  const zone = document.getElementById("dropzone");
  if (!zone) return;
  const input = zone.querySelector("input[type=file]");
  const preview = document.getElementById("preview");
  const previews = document.getElementById("previews");
  const error = input.form && input.form.querySelector("[data-error]");
  const show = () => {
    if (!input.files.length) return;
    zone.classList.add("has-file");
    if (!input.multiple) {
      preview.src = URL.createObjectURL(input.files[0]);
      preview.hidden = false;
      return;
    }
    previews.replaceChildren(...Array.from(input.files).map((file) => {
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = file.name;
      img.title = file.name;
      return img;
    }));
    previews.hidden = false;
    const max = Number(input.dataset.max);
    if (error) {
      error.textContent = max && input.files.length > max
        ? input.files.length + " photos chosen: at most " + max + " can be searched together." : "";
    }
  };
  input.addEventListener("change", show);
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) { input.files = e.dataTransfer.files; show(); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupDropzone();
  pollJobs();
});

/** Video hits: start playing at the hit's time (the #t= fragment of the source does it too, where supported). */
document.querySelectorAll("video[data-start]").forEach((video) => {
  video.addEventListener("loadedmetadata", () => {
    const start = Number(video.dataset.start);
    if (Number.isFinite(start) && video.currentTime < start) video.currentTime = start;
  }, { once: true });
});
