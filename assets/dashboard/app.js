// The campaign dashboard: reads the admin API with the token the user types (kept in this
// tab's sessionStorage), shows times in the browser's time zone, and builds every element
// with textContent, never innerHTML: uids, tags and targets come from clicks.
"use strict";

const TOKEN_KEY = "clicktrack.token";
const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;
// Interaction types are shown by their id, as the API, the CLI, the CSV and the links
// (`type=button_url`) name them; what each one is goes in the tooltip.
const TYPE_LABELS = {
  image_click: "Image",
  button_url: "Button",
  carousel_click: "Carousel",
  imagemap_click: "Image map",
  richmenu_click: "Rich menu",
  flex_click: "Flex message",
  text_link: "Text link",
};
// Bars get their number printed above them when there are at most this many.
const MAX_VALUE_LABELS = 31;
const $ = (id) => document.getElementById(id);
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    route();
    throw new Error("The token was not accepted.");
  }
  if (!response.ok) {
    let reason = response.statusText;
    try { reason = (await response.json()).error; } catch (_) { /* not JSON */ }
    throw new Error(reason);
  }
  return response;
}

function localTime(iso, withDate = true) {
  if (!iso) return "–";
  const options = withDate
    ? { dateStyle: "medium", timeStyle: "short" }
    : { timeStyle: "short" };
  return new Date(iso).toLocaleString(undefined, options);
}

// A bar's or an axis's label. Day buckets are UTC days: labelled by their date alone, not
// by the local time of a UTC midnight ("12:00 AM", "9:00 AM" in Tokyo).
function bucketTime(iso, bucket) {
  if (bucket !== "day") return localTime(iso);
  return new Date(iso).toLocaleDateString(undefined, { dateStyle: "medium", timeZone: "UTC" });
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function fmt(n) { return Number(n).toLocaleString(); }

// `section` is "sign-in", "list", "detail", or "none" (an error alone, with the way back).
function show(section) {
  for (const id of ["sign-in", "list", "detail"]) $(id).hidden = id !== section;
  $("sign-out").hidden = section === "sign-in";
  $("back").hidden = section === "sign-in" || section === "list";
}

// "Last N days" in whole buckets as the API groups them (UTC hours for a day, UTC days
// beyond): N days give N bars (24 for one day), the last one being the current bucket.
function period(days) {
  const to = Math.floor(Date.now() / 1000) * 1000 + 1000;
  const step = days <= 1 ? HOUR : DAY;
  const count = days <= 1 ? 24 : days;
  const from = Math.floor((to - 1000) / step) * step - (count - 1) * step;
  const iso = (t) => new Date(t).toISOString().slice(0, 19) + "Z";
  return "from=" + encodeURIComponent(iso(from)) + "&to=" + encodeURIComponent(iso(to));
}

async function showList() {
  show("list");
  const { campaigns } = await (await api("/api/campaigns")).json();
  const body = $("campaigns").tBodies[0];
  body.replaceChildren();
  for (const c of campaigns) {
    const row = el("tr");
    row.dataset.id = c.id;
    const link = el("a", c.name || "(no name)");
    link.href = "#campaign=" + c.id;
    const name = el("td");
    name.append(link);
    row.append(el("td", String(c.id)), name, el("td", fmt(c.clicked_count), "num"),
      el("td", fmt(c.unique_members), "num"), el("td", localTime(c.last_click_at)));
    row.addEventListener("click", () => { location.hash = "campaign=" + c.id; });
    body.append(row);
  }
  $("no-campaigns").hidden = campaigns.length > 0;
}

function bars(listId, items, label, title = label) {
  const list = $(listId);
  list.replaceChildren();
  const max = Math.max(1, ...items.map((i) => i.clicks));
  for (const item of items) {
    const li = el("li");
    const fill = el("span", undefined, "fill");
    fill.style.width = (100 * item.clicks / max).toFixed(1) + "%";
    const name = el("span", label(item));
    name.title = title(item);
    li.append(fill, name, el("span", fmt(item.clicks), "n"));
    list.append(li);
  }
  if (items.length === 0) list.append(el("li", "None in this period", "empty"));
}

function chart(series, bucket) {
  const svg = $("chart");
  svg.replaceChildren();
  const width = 600, height = 200, pad = 4;
  const max = Math.max(1, ...series.map((p) => p.clicks));
  const step = width / Math.max(1, series.length);
  series.forEach((p, i) => {
    const h = (height - pad) * p.clicks / max;
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    rect.setAttribute("class", "bar");
    rect.setAttribute("x", (i * step + step * 0.1).toFixed(2));
    rect.setAttribute("width", Math.max(0.5, step * 0.8).toFixed(2));
    rect.setAttribute("y", (height - h).toFixed(2));
    rect.setAttribute("height", h.toFixed(2));
    rect.dataset.clicks = p.clicks;
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = bucketTime(p.start, bucket) + ": " + fmt(p.clicks) + " clicks";
    rect.append(title);
    svg.append(rect);
  });
  $("bucket").textContent = bucket === "day" ? "(per day, UTC days)" : "(per hour, " + zone + ")";
  $("axis-start").textContent = series.length ? bucketTime(series[0].start, bucket) : "";
  $("axis-end").textContent =
    series.length ? bucketTime(series[series.length - 1].start, bucket) : "";
  // The scale, and each bar's count when there is room to print it.
  $("y-max").textContent = fmt(max);
  $("y-mid").textContent = max >= 2 ? fmt(max / 2) : "";
  const values = $("chart-values");
  values.replaceChildren(...series.map((p) =>
    el("span", series.length <= MAX_VALUE_LABELS && p.clicks > 0 ? fmt(p.clicks) : "")));
}

// Nothing of the previous campaign may show while the next one loads, or if it fails.
function clearDetail() {
  $("campaign-title").textContent = "";
  for (const id of ["total-clicks", "unique-members", "anonymous-clicks", "clicked-count",
    "bucket", "axis-start", "axis-end", "y-max", "y-mid"]) $(id).textContent = "";
  for (const id of ["chart", "chart-values", "by-type", "by-tag", "top-targets"]) {
    $(id).replaceChildren();
  }
  $("top-members").tBodies[0].replaceChildren();
}

async function showCampaign(id) {
  clearDetail();
  const query = period(Number($("range").value));
  const stats = await (await api("/api/campaigns/" + id + "/stats?" + query)).json();
  show("detail");
  $("campaign-title").textContent = "#" + stats.campaign.id + " " + stats.campaign.name;
  $("total-clicks").textContent = fmt(stats.totals.clicks);
  $("unique-members").textContent = fmt(stats.totals.unique_members);
  $("anonymous-clicks").textContent = fmt(stats.totals.anonymous_clicks);
  $("clicked-count").textContent = fmt(stats.campaign.clicked_count);
  chart(stats.series, stats.bucket);
  // Every type, none-clicked ones too, as `clicktrack stats` lists them.
  bars("by-type", stats.by_type, (t) => t.name, (t) => TYPE_LABELS[t.name] || t.name);
  bars("by-tag", stats.by_tag, (t) => t.name);
  const tagged = stats.by_tag.reduce((sum, t) => sum + t.clicks, 0);
  $("tag-note").hidden = tagged <= stats.totals.clicks;
  bars("top-targets", stats.top_targets, (t) => t.name);
  const body = $("top-members").tBodies[0];
  body.replaceChildren();
  for (const m of stats.top_members) {
    const who = m.display_name ? m.display_name + " (" + m.uid + ")" : m.uid;
    const row = el("tr");
    row.append(el("td", who, "wrap"), el("td", fmt(m.clicks), "num"));
    body.append(row);
  }
  $("download-csv").onclick = () => download(id, query).catch((e) => showError(e.message));
}

async function download(id, query) {
  const blob = await (await api("/api/campaigns/" + id + "/clicks.csv?" + query)).blob();
  const link = el("a");
  link.href = URL.createObjectURL(blob);
  link.download = "campaign-" + id + "-clicks.csv";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

async function route() {
  showError("");
  if (!token()) { show("sign-in"); $("token").focus(); return; }
  const match = /^#campaign=(\d+)$/.exec(location.hash);
  try {
    if (match) await showCampaign(match[1]); else await showList();
  } catch (e) {
    if (token()) show("none");
    showError(e.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("zone").textContent = "Times in " + zone;
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    route();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = "";
    route();
  });
  $("range").addEventListener("change", route);
  window.addEventListener("hashchange", route);
  route();
});
