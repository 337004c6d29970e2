// tether search page: text / image search over /search, results grid, search by a result, pair check.
"use strict";
const $ = (id) => document.getElementById(id);
let lastQuery = null;

function modality() { return document.querySelector("input[name=modality]:checked").value; }

function message(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "muted";
}

async function post(path, body) {
  const response = await fetch(path, { method: "POST", headers: { "content-type": "application/json" },
                                        body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function fileToBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(new Error("could not read the file"));
    reader.readAsDataURL(file);
  });
}

async function search(query, label) {
  lastQuery = { query, label };
  const body = Object.assign({ modality: modality(), k: Number($("k").value) || 24,
                               deduplicate: $("dedup").checked }, query);
  message(`searching ${label}…`);
  const started = performance.now();
  try {
    const data = await post("/search", body);
    render(data.results);
    message(`${data.results.length} ${data.modality === "image" ? "images" : "captions"} for ${label} ` +
            `(${Math.round(performance.now() - started)} ms)`);
  } catch (err) {
    message(err.message, true);
  }
}

function render(results) {
  const grid = $("results");
  grid.replaceChildren();
  for (const r of results) {
    const card = document.createElement("div");
    card.className = "result";
    card.dataset.id = r.id;
    card.title = "search by this " + (modality() === "image" ? "image" : "caption");
    if (modality() === "image" && r.url) {
      const img = document.createElement("img");
      img.src = r.url;
      img.alt = r.caption || r.key || `row ${r.id}`;
      img.loading = "lazy";
      card.appendChild(img);
    } else {
      card.classList.add("text-only");
    }
    const caption = document.createElement("p");
    caption.className = "caption";
    caption.textContent = r.caption || r.key || `row ${r.id}`;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `#${r.id} · ${r.similarity.toFixed(3)}`;
    const pick = document.createElement("button");
    pick.className = "pick";
    pick.textContent = "✓";
    pick.title = "use this row in the pair check";
    pick.addEventListener("click", (e) => {
      e.stopPropagation();
      $("pair-id").value = r.id;
      if (r.caption && !$("pair-text").value) $("pair-text").value = r.caption;
    });
    card.append(caption, score, pick);
    card.addEventListener("click", () =>
      search({ id: r.id, id_modality: modality() }, `row ${r.id}'s ${modality() === "image" ? "image" : "caption"}`));
    grid.appendChild(card);
  }
}

async function searchFile(file) {
  if (!file) return;
  try {
    await search({ image: await fileToBase64(file) }, `image ${file.name}`);
  } catch (err) {
    message(err.message, true);
  }
}

async function pairCheck() {
  const out = $("pair-result");
  const body = { text: $("pair-text").value };
  const file = $("pair-file").files[0];
  if (file) body.image = await fileToBase64(file);
  else if ($("pair-id").value !== "") body.image_id = Number($("pair-id").value);
  try {
    const r = await post("/pair", body);
    out.innerHTML = "";
    const dl = document.createElement("dl");
    const rows = [["score", r.score.toFixed(4)],
                  ["image's rank for the caption", r.image_rank === null ? "–" : `${r.image_rank} of ${r.rows}`],
                  ["caption's rank for the image", r.text_rank === null ? "–" : `${r.text_rank} of ${r.rows}`]];
    for (const [k, v] of rows) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v; dd.className = "pair-" + k.split(" ")[0].replace("'s", "");
      dl.append(dt, dd);
    }
    out.appendChild(dl);
  } catch (err) {
    out.innerHTML = "";
    const p = document.createElement("p"); p.className = "error"; p.textContent = err.message;
    out.appendChild(p);
  }
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("query").value.trim();
  if (text) search({ text }, `“${text}”`);
});
$("file").addEventListener("change", (e) => searchFile(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  searchFile(e.dataTransfer.files[0]);
});
for (const radio of document.querySelectorAll("input[name=modality]")) {
  radio.addEventListener("change", () => { if (lastQuery) search(lastQuery.query, lastQuery.label); });
}
$("pair-go").addEventListener("click", pairCheck);

fetch("/health").then((r) => r.json()).then((h) => {
  $("status").textContent = `${h.name}: ${h.rows} rows · ${h.modalities.join(" + ")} · model ${h.model || "none"}`;
}).catch(() => { $("status").textContent = "server not answering"; });
