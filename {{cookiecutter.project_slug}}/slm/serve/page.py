"""The web chat served at `/`: one static page, no build step and no extra dependency.

A static page rather than Gradio: it calls the same /v1/chat/completions route every other client
uses (so what you see is what the API answers), it adds no package to the pinned stack, and it is
small enough to read. It lists /v1/models and shows one column per ticked model, so with a base
model served next to the fine-tuned one, both answer the same message side by side.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chat with the fine-tuned model</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; display: flex; flex-direction: column; height: 100vh; }
  header { padding: .6rem 1rem; background: #1f2937; color: #f9fafb;
           display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
  header h1 { font-size: 1rem; margin: 0; }
  header label { font-size: .9rem; }
  #key { width: 12rem; }
  #columns { flex: 1; display: flex; gap: .5rem; padding: .5rem; overflow: hidden; }
  .column { flex: 1; display: flex; flex-direction: column; min-width: 0;
            border: 1px solid #d1d5db; border-radius: 6px; }
  .column h2 { font-size: .9rem; margin: 0; padding: .4rem .6rem;
               background: #f3f4f6; border-bottom: 1px solid #d1d5db; }
  .log { flex: 1; overflow-y: auto; padding: .5rem; }
  .turn { margin: .3rem 0; white-space: pre-wrap; }
  .user { color: #1e40af; }
  .assistant { color: #111827; }
  .error { color: #b91c1c; }
  form { display: flex; gap: .5rem; padding: .5rem; border-top: 1px solid #d1d5db; }
  #input { flex: 1; font: inherit; padding: .4rem; }
  #status { font-size: .8rem; color: #d1d5db; }
</style>
</head>
<body>
<header>
  <h1>Chat</h1>
  <span id="models"></span>
  <label>API key <input id="key" type="password" placeholder="only if the server needs one"></label>
  <span id="status">loading models...</span>
</header>
<div id="columns"></div>
<form id="form">
  <input id="input" autocomplete="off" placeholder="Type a message and press Enter" autofocus>
  <button id="send" type="submit">Send</button>
</form>
<script>
const history = {};   // model id -> [{role, content}], each column keeps its own conversation
const $ = (id) => document.getElementById(id);

function headers() {
  const h = {"Content-Type": "application/json"};
  const key = $("key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function selected() {
  return [...document.querySelectorAll("#models input:checked")].map((box) => box.value);
}

function drawColumns() {
  const columns = $("columns");
  columns.innerHTML = "";
  for (const model of selected()) {
    const column = document.createElement("section");
    column.className = "column";
    column.dataset.model = model;
    column.innerHTML = "<h2></h2><div class='log'></div>";
    column.querySelector("h2").textContent = model;
    for (const turn of history[model] || []) addTurn(column, turn.role, turn.content);
    columns.appendChild(column);
  }
}

function addTurn(column, role, text) {
  const div = document.createElement("div");
  div.className = "turn " + role;
  div.textContent = text;
  column.querySelector(".log").appendChild(div);
  return div;
}

async function loadModels() {
  const response = await fetch("/v1/models", {headers: headers()});
  const body = await response.json();
  if (!response.ok) { $("status").textContent = body.error.message; return; }
  const span = $("models");
  span.innerHTML = "";
  for (const model of body.data.map((m) => m.id)) {
    const label = document.createElement("label");
    label.innerHTML = "<input type='checkbox' checked> ";
    label.querySelector("input").value = model;
    label.querySelector("input").addEventListener("change", drawColumns);
    label.append(model + " ");
    span.appendChild(label);
    history[model] = history[model] || [];
  }
  $("status").textContent = "ready";
  drawColumns();
}

async function ask(column, text) {
  const model = column.dataset.model;
  history[model].push({role: "user", content: text});
  addTurn(column, "user", text);
  const out = addTurn(column, "assistant", "");
  out.classList.add("streaming");
  const response = await fetch("/v1/chat/completions", {
    method: "POST", headers: headers(),
    body: JSON.stringify({model, messages: history[model], stream: true, temperature: 0}),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({error: {message: response.statusText}}));
    out.className = "turn error";
    out.textContent = body.error.message;
    history[model].pop();
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let end;
    while ((end = buffer.indexOf("\\n\\n")) !== -1) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) { out.className = "turn error"; out.textContent = chunk.error.message; continue; }
      out.textContent += chunk.choices[0].delta.content || "";
      column.querySelector(".log").scrollTop = 1e9;
    }
  }
  out.classList.remove("streaming");
  out.classList.add("done");
  history[model].push({role: "assistant", content: out.textContent});
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("input").value.trim();
  if (!text) return;
  $("input").value = "";
  $("status").textContent = "answering...";
  const columns = [...document.querySelectorAll(".column")];
  await Promise.all(columns.map((column) => ask(column, text).catch((error) => {
    addTurn(column, "error", String(error));
  })));
  $("status").textContent = "ready";
});
$("key").addEventListener("change", loadModels);
loadModels();
</script>
</body>
</html>
"""
