// Headless Chromium on the live status page of a running zajel-signal with no sessions yet: the page
// loads without errors (its Content-Security-Policy allows nothing from elsewhere), polls /stats, shows
// the certificate and the limits, and its numbers move when a client connects, sends and leaves. A
// screenshot with the client connected is kept as an artifact.
//
//   node interop/status.mjs --http http://127.0.0.1:8080 --ws ws://127.0.0.1:8080/ --artifacts .interop/artifacts

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { LAUNCH, loadChromium } from "./chromium.mjs";

const STEP_TIMEOUT_MS = 20000;
const PINGS = 25;

function fail(message) {
  console.error(`status page interop: FAILED: ${message}`);
  process.exit(1);
}

const { values: args } = parseArgs({
  options: { http: { type: "string" }, ws: { type: "string" }, artifacts: { type: "string" } },
});
if (!args.http || !args.ws || !args.artifacts) fail("usage: --http URL --ws URL --artifacts DIR");
const chromium = await loadChromium(fail);

const browser = await chromium.launch(LAUNCH);

/** The numbers the page shows now. */
function shown(page) {
  return page.evaluate(() => {
    const text = (id) => document.getElementById(id).textContent;
    const count = (id) => Number(text(id).replaceAll(",", ""));
    return {
      polls: Number(document.body.dataset.polls),
      state: text("state"),
      connections: count("connections"),
      websocket: count("sessions-websocket"),
      quic: count("sessions-quic"),
      webtransport: count("sessions-webtransport"),
      messages: count("messages-received"),
      messageRate: Number(text("message-rate")),
      certificate: text("certificate-days"),
      limits: document.querySelectorAll("#limits tr").length,
    };
  });
}

async function until(page, what, predicate) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let now;
  while (Date.now() < deadline) {
    now = await shown(page);
    if (predicate(now)) return now;
    await page.waitForTimeout(200);
  }
  fail(`${what}; the page shows ${JSON.stringify(now)}`);
}

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  const response = await page.goto(new URL("/status", args.http).href);
  if (response.status() !== 200) fail(`GET /status answered ${response.status()}`);

  const idle = await until(page, "the page did not show the server's first numbers",
    (now) => now.polls >= 1 && now.state === "live");
  if (idle.connections !== 0 || idle.websocket !== 0 || idle.quic !== 0 || idle.webtransport !== 0) {
    fail(`expected no sessions before the client: ${JSON.stringify(idle)}`);
  }
  if (!/^\d+\.\d days$/.test(idle.certificate)) fail(`certificate shown as "${idle.certificate}"`);
  if (idle.limits < 10) fail(`only ${idle.limits} limits shown`);

  // A client in another tab: a WebSocket session that sends pings.
  const client = await browser.newPage();
  await client.evaluate(async ({ url, pings }) => {
    window.socket = new WebSocket(url);
    await new Promise((opened, failed) => { socket.onopen = opened; socket.onerror = failed; });
    for (let i = 0; i < pings; i++) socket.send(JSON.stringify({ type: "ping" }));
  }, { url: args.ws, pings: PINGS });
  const busy = await until(page, "the page did not show the client's session and messages",
    (now) => now.connections === 1 && now.websocket === 1 && now.messages >= idle.messages + PINGS
      && now.messageRate > 0);
  await mkdir(args.artifacts, { recursive: true });
  const screenshot = join(args.artifacts, "status.png");
  await page.screenshot({ path: screenshot, fullPage: true });

  await client.evaluate(() => socket.close());
  await until(page, "the page did not show the client leaving",
    (now) => now.connections === 0 && now.websocket === 0);
  if (problems.length > 0) fail(problems.join("; "));
  console.log(`status page interop: sessions 0 → ${busy.connections} → 0, messages ${idle.messages} → `
    + `${busy.messages} (${busy.messageRate}/s shown), certificate ${idle.certificate}, `
    + `${idle.limits} limits; screenshot ${screenshot}`);
} finally {
  await browser.close();
}
