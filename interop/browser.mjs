// Headless Chromium against a running zajel-signal: pages using clients/js/zajel-signal.js, over
// WebTransport with the development-certificate hash each page fetches from /cert-hash, and with
// WebTransport disabled so that they fall back to WebSocket, find each other by an hourly token.
//
//   node interop/browser.mjs --http http://127.0.0.1:8080 --wt https://127.0.0.1:4433/ --ws ws://127.0.0.1:8080/

import { createServer } from "node:http";
import { readFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { LAUNCH, loadChromium } from "./chromium.mjs";

const STEP_TIMEOUT_MS = 20000;
const here = dirname(fileURLToPath(import.meta.url));

function fail(message) {
  console.error(`browser interop: FAILED: ${message}`);
  process.exit(1);
}

const { values: args } = parseArgs({
  options: { http: { type: "string" }, wt: { type: "string" }, ws: { type: "string" } },
});
if (!args.http || !args.wt || !args.ws) fail("usage: --http URL --wt URL --ws URL");
const chromium = await loadChromium(fail);

const hash = await (await fetch(new URL("/cert-hash", args.http))).json();
if (hash.algorithm !== "sha-256" || !hash.value) fail(`unexpected /cert-hash ${JSON.stringify(hash)}`);

// The page must come from a secure context: http://127.0.0.1 is one.
const files = {
  "/page.html": ["text/html", join(here, "page.html")],
  "/zajel-signal.js": ["text/javascript", join(here, "..", "clients", "js", "zajel-signal.js")],
};
const pages = createServer(async (request, response) => {
  const path = new URL(request.url, "http://x").pathname;
  if (path === "/favicon.ico") return response.writeHead(204).end();
  const file = files[path];
  if (!file) return response.writeHead(404).end();
  response.writeHead(200, { "content-type": file[0] }).end(await readFile(file[1]));
});
await new Promise((resolve) => pages.listen(0, "127.0.0.1", resolve));
const pageBase = `http://127.0.0.1:${pages.address().port}/page.html`;

const profile = await mkdtemp(join(tmpdir(), "zajel-chromium-"));
const browser = await chromium.launchPersistentContext(profile, LAUNCH);

async function open(peer, token, { disableWebTransport, wrongHash, expectPush, pair }) {
  const query = new URLSearchParams({ http: args.http, wt: args.wt, ws: args.ws, code: peer, token,
    disableWebTransport: disableWebTransport ? "1" : "0", wrongHash: wrongHash ? "1" : "0",
    expectPush: expectPush ? "1" : "0", pair: pair ? "1" : "0" });
  const page = await browser.newPage();
  page.on("console", (message) => console.log(`  [${peer}] ${message.text()}`));
  await page.goto(`${pageBase}?${query}`);
  return page;
}

async function reach(page, peer, step) {
  try {
    await page.waitForFunction((wanted) => ["failed", wanted].includes(window.zajel?.step)
      || (wanted === "registered" && window.zajel?.step === "done"), step, { timeout: STEP_TIMEOUT_MS });
  } catch {
    fail(`${peer} did not reach "${step}": ${JSON.stringify(await page.evaluate(() => window.zajel))}`);
  }
  const state = await page.evaluate(() => window.zajel);
  if (state.step === "failed") fail(`${peer}: ${state.error}`);
  return state;
}

function check(condition, message) {
  if (!condition) fail(message);
}

/**
 * The first page registers a token and waits; the second registers it too: a live match and a push.
 * With `pair`, the two then pair and exchange an offer and an answer.
 */
async function scenario(name, first, second, pair = false) {
  const token = `interop-${name}-${Date.now()}`;
  const earlier = await open(first.peer, token, { ...first, expectPush: true, pair });
  const earlierState = await reach(earlier, first.peer, "registered");
  const later = await open(second.peer, token, { ...second, expectPush: false, pair });
  const laterState = await reach(later, second.peer, "done");
  const matched = await reach(earlier, first.peer, "done");
  for (const [state, options, peer] of [[earlierState, first, first.peer], [laterState, second, second.peer]]) {
    const expected = options.disableWebTransport || options.wrongHash ? "websocket" : "webtransport";
    check(state.transport === expected, `${peer} used ${state.transport}, expected ${expected}`);
    check(state.certificateHash === hash.value, `${peer} read the hash ${state.certificateHash}`);
    check(state.serverInfo?.type === "server_info", `${peer}: no server_info (${JSON.stringify(state.serverInfo)})`);
    check(state.registered?.type === "registered" && state.registered.pairingCode === peer,
      `${peer}: register -> ${JSON.stringify(state.registered)}`);
    check(state.rendezvous?.type === "rendezvous_result", `${peer}: ${JSON.stringify(state.rendezvous)}`);
  }
  const live = laterState.rendezvous.liveMatches;
  check(live.length === 1 && live[0].peerId === first.peer && live[0].meetingPoint === token,
    `${second.peer} should match ${first.peer}: ${JSON.stringify(live)}`);
  check(matched.match?.type === "rendezvous_match" && matched.match.match.peerId === second.peer,
    `${first.peer} should be pushed ${second.peer}: ${JSON.stringify(matched.match)}`);
  if (pair) {
    check(matched.paired?.type === "pair_matched" && matched.paired.isInitiator === true
      && matched.paired.peerCode === second.peer, `${first.peer} pairing: ${JSON.stringify(matched.paired)}`);
    check(laterState.paired?.type === "pair_matched" && laterState.paired.isInitiator === false
      && laterState.paired.peerCode === first.peer, `${second.peer} pairing: ${JSON.stringify(laterState.paired)}`);
    check(laterState.signal?.type === "offer" && laterState.signal.from === first.peer
      && laterState.signal.payload?.sdp === `offer from ${first.peer}`,
      `${second.peer} offer: ${JSON.stringify(laterState.signal)}`);
    check(matched.signal?.type === "answer" && matched.signal.from === second.peer
      && matched.signal.payload?.sdp === `answer from ${second.peer}`,
      `${first.peer} answer: ${JSON.stringify(matched.signal)}`);
  }
  console.log(`browser interop: ${name}: ${first.peer} (${earlierState.transport}) and `
    + `${second.peer} (${laterState.transport}) matched${pair ? ", paired and signalled" : ""}`);
  await earlier.close();
  await later.close();
}

try {
  await scenario("webtransport-first",
    { peer: "WTPGE2", disableWebTransport: false },
    { peer: "WSPGE2", disableWebTransport: true });
  await scenario("websocket-first",
    { peer: "WSPGE3", disableWebTransport: true },
    { peer: "WTPGE3", disableWebTransport: false });
  await scenario("webtransport-fails",
    { peer: "WTPGE4", disableWebTransport: false },
    { peer: "BADHSH", wrongHash: true });
  await scenario("pair-and-signal",
    { peer: "WTPGE5", disableWebTransport: false },
    { peer: "WSPGE5", disableWebTransport: true }, true);
  console.log("browser interop: 4 passed, 0 failed");
} finally {
  await browser.close();
  pages.close();
  await rm(profile, { recursive: true, force: true });
}
