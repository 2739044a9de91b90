// Inspector console: review-queue keys and clicks, live training progress. No libraries.
"use strict";

function reviewQueue(root) {
  const classes = root.dataset.classes.split(",");
  const items = () => Array.from(root.querySelectorAll(".review-item"));
  const selected = () => root.querySelector(".review-item.selected");

  function select(item) {
    items().forEach((i) => i.classList.remove("selected"));
    if (item) { item.classList.add("selected"); item.focus({ preventScroll: false }); }
  }

  function next(item) {
    const all = items();
    return all[all.indexOf(item) + 1] || all[all.indexOf(item) - 1] || null;
  }

  async function label(item, name) {
    const status = item.querySelector(".status");
    status.textContent = "saving…";
    const response = await fetch(`/v1/images/${item.dataset.image}/label`, {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label: name, reason: "console review" }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      status.textContent = (body.error && body.error.message) || `failed (${response.status})`;
      return;
    }
    const after = next(item);
    item.remove();
    select(after);
    if (!items().length) root.insertAdjacentHTML("beforeend", '<p class="muted empty">The review queue is empty.</p>');
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    const item = event.target.closest(".review-item");
    if (!item) return;
    select(item);
    if (button && button.dataset.label) label(item, button.dataset.label);
    if (button && button.hasAttribute("data-skip")) select(next(item));
  });

  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, textarea") || event.metaKey || event.ctrlKey || event.altKey) return;
    const item = selected();
    if (!item) return;
    const all = items();
    if (event.key === "j") select(all[all.indexOf(item) + 1] || item);
    else if (event.key === "k") select(all[all.indexOf(item) - 1] || item);
    else if (event.key === "s") select(next(item));
    else if (/^[1-9]$/.test(event.key) && classes[Number(event.key) - 1]) label(item, classes[Number(event.key) - 1]);
    else return;
    event.preventDefault();
  });
}

function trainingRuns(table) {
  async function refresh() {
    const response = await fetch("/v1/training-runs", { credentials: "same-origin" });
    if (!response.ok) return;
    for (const run of await response.json()) {
      const row = table.querySelector(`tr[data-run="${run.run_id}"]`);
      if (!row) continue;
      row.querySelector(".state").textContent = run.state;
      const p = run.progress || {};
      let text = "";
      if (run.state === "running") {
        text = p.phase === "training" && p.batches
          ? `epoch ${p.epoch}/${p.epochs} · batch ${p.batch}/${p.batches} · loss ${Number(p.loss).toFixed(4)}` +
            (p.eta_seconds != null ? ` · ETA ${Math.round(p.eta_seconds)} s` : "")
          : `${p.phase || "starting"}…`;
      }
      row.querySelector(".progress").textContent = text;
      if (run.result && run.result.version && !row.querySelector(".result a")) {
        row.querySelector(".result").innerHTML = `<a href="/models/${run.result.version}">version ${run.result.version}</a>`;
      } else if (run.result && run.result.code) {
        row.querySelector(".result").textContent = `${run.result.code}: ${run.result.message}`;
      }
    }
  }
  refresh();
  setInterval(refresh, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const review = document.getElementById("review");
  if (review) reviewQueue(review);
  const runs = document.getElementById("runs");
  if (runs) trainingRuns(runs);
});
