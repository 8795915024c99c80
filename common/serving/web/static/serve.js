// Shared by the pages of `python -m common serve`: which model answers, and posting files to the API.
"use strict";

// Fills the element #model with the model that answers `project` and its recorded test score,
// from /api/health; returns that project's health entry (null when it is not served).
async function showModel(project) {
  const box = document.getElementById("model");
  try {
    const health = await (await fetch("/api/health")).json();
    const entry = health.projects[project];
    if (entry) {
      const score = entry.score ? `recorded ${entry.score.metric} ${entry.score.value.toFixed(4)}` : "no recorded score";
      box.textContent = `Answered by ${entry.model} (${score}; data: ${entry.data_source || "not recorded"})` +
        (entry.stand_in_data ? " - trained on a STAND-IN for the real data" : "") +
        (entry.no_better ? ` - WARNING: ${entry.no_better}` : "");
      return entry;
    }
    box.classList.add("missing");
    box.textContent = `Not served: ${health.unavailable[project] || "unknown project"}`;
  } catch (error) {
    box.classList.add("missing");
    box.textContent = `Could not read /api/health: ${error}`;
  }
  return null;
}

// Posts one file (field `file`) to an API route; returns its JSON, or throws its {"error"} message.
async function postFile(url, blob, filename) {
  const form = new FormData();
  if (blob) form.append("file", blob, filename);
  const response = await fetch(url, { method: "POST", body: form });
  let body;
  try {
    body = await response.json();
  } catch (error) {
    throw new Error(`HTTP ${response.status}`);
  }
  if (!response.ok) {
    // The values a project's error offers to pick (e.g. a CSV's columns), by option.
    const error = new Error(body.error || `HTTP ${response.status}`);
    error.choices = body.choices || {};
    throw error;
  }
  return body;
}

// Shows an error message in #error (or clears it).
function showError(message) {
  document.getElementById("error").textContent = message || "";
}
