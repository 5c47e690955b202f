// Headless Chromium sees a drain: a page opens a WebTransport session to a zajel-signal this script
// starts itself, the server gets SIGTERM, and the page's `transport.closed` must resolve with
// {closeCode: 0, reason: "shutting down"} (the server's CLOSE_WEBTRANSPORT_SESSION capsule), not
// reject (what a bare QUIC connection close gives); the server must then exit 0.
//
//   node interop/drain.mjs --server target/debug/zajel-signal
//
// NETLOG=/tmp/netlog.json keeps Chromium's net-log (the QUIC frames it sent and received) there.

import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { LAUNCH, loadChromium } from "./chromium.mjs";

const STEP_TIMEOUT_MS = 20000;

const { values: args } = parseArgs({ options: { server: { type: "string" } } });

let server;
let log = "";
function fail(message) {
  console.error(`drain interop: FAILED: ${message}`);
  if (log) console.error(`server log:\n${log}`);
  server?.kill("SIGKILL");
  process.exit(1);
}

if (!args.server) fail("usage: --server PATH_TO_ZAJEL_SIGNAL");
if (!existsSync(args.server)) fail(`no server binary at ${args.server} (cargo build)`);
const chromium = await loadChromium(fail);

const dataDir = await mkdtemp(join(tmpdir(), "zajel-drain-data-"));
server = spawn(args.server,
  ["--ws-listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0", "--data-dir", dataDir],
  { stdio: ["ignore", "pipe", "pipe"] });
for (const output of [server.stdout, server.stderr]) output.on("data", (chunk) => { log += chunk; });
const exited = new Promise((resolve) => server.on("exit", (code, signal) => resolve({ code, signal })));

// The addresses it logs once it serves (`addr=` is the WebSocket/HTTP one, `quic_addr=` the UDP one).
const addresses = await (async () => {
  for (let waited = 0; waited < STEP_TIMEOUT_MS; waited += 50) {
    const plain = log.replace(/\x1b\[[0-9;]*m/g, "");
    const http = plain.match(/\baddr=(127\.0\.0\.1:\d+)/)?.[1];
    const quic = plain.match(/\bquic_addr=(127\.0\.0\.1:\d+)/)?.[1];
    if (http && quic) return { http, quic };
    if (server.exitCode !== null || server.signalCode !== null) fail("the server exited before serving");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  fail("the server did not report its addresses");
})();

const hash = await (await fetch(`http://${addresses.http}/cert-hash`)).json();
if (hash.algorithm !== "sha-256" || !hash.value) fail(`unexpected /cert-hash ${JSON.stringify(hash)}`);

// WebTransport needs a secure context: a blank page from http://127.0.0.1 is one.
const pages = createServer((request, response) => {
  response.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>drain</title>");
});
await new Promise((resolve) => pages.listen(0, "127.0.0.1", resolve));

const profile = await mkdtemp(join(tmpdir(), "zajel-chromium-"));
const browser = await chromium.launchPersistentContext(profile, LAUNCH);

try {
  const page = await browser.newPage();
  page.on("console", (message) => console.log(`  [page] ${message.text()}`));
  await page.goto(`http://127.0.0.1:${pages.address().port}/`);
  // Connects, waits for the session's first push (server_info: the session is being served), and
  // records how `closed` settles on window.drain.
  const opened = await page.evaluate(async ({ url, hash }) => {
    const value = Uint8Array.from(atob(hash), (c) => c.charCodeAt(0));
    const transport = new WebTransport(url, { serverCertificateHashes: [{ algorithm: "sha-256", value }] });
    window.drain = { state: "connecting" };
    transport.closed.then(
      (info) => { window.drain = { state: "closed", closeCode: info.closeCode, reason: info.reason }; },
      (error) => { window.drain = { state: "rejected", error: `${error.name}: ${error.message}`, source: error.source }; });
    try {
      await transport.ready;
      const streams = transport.incomingUnidirectionalStreams.getReader();
      const { value: pushes } = await streams.read();
      const { value: first } = await pushes.getReader().read();
      if (!first?.length) return "the push stream ended before server_info";
    } catch (error) {
      return `not connected: ${error}`;
    }
    window.drain.state = "open";
    return "open";
  }, { url: `https://${addresses.quic}/`, hash: hash.value });
  if (opened !== "open") fail(`the page's WebTransport session: ${opened}`);
  console.log(`drain interop: a WebTransport session open to ${addresses.quic}; sending SIGTERM`);

  const signalled = Date.now();
  server.kill("SIGTERM");
  try {
    await page.waitForFunction(() => ["closed", "rejected"].includes(window.drain.state), null,
      { timeout: STEP_TIMEOUT_MS });
  } catch {
    fail(`transport.closed did not settle: ${JSON.stringify(await page.evaluate(() => window.drain))}`);
  }
  const closed = await page.evaluate(() => window.drain);
  if (closed.state !== "closed" || closed.closeCode !== 0 || closed.reason !== "shutting down") {
    fail(`transport.closed should resolve with {closeCode: 0, reason: "shutting down"}: ${JSON.stringify(closed)}`);
  }
  console.log(`drain interop: transport.closed resolved with ${JSON.stringify({ closeCode: closed.closeCode, reason: closed.reason })}`);

  let timer;
  const exit = await Promise.race([
    exited,
    new Promise((resolve) => { timer = setTimeout(resolve, STEP_TIMEOUT_MS, null); }),
  ]);
  clearTimeout(timer);
  if (!exit) fail("the server did not exit after SIGTERM");
  if (exit.code !== 0) fail(`the server exited with code ${exit.code}, signal ${exit.signal}`);
  console.log(`drain interop: the server drained and exited 0 in ${Date.now() - signalled} ms`);
  console.log("drain interop: 1 passed, 0 failed");
} finally {
  await browser.close();
  pages.close();
  server.kill("SIGKILL");
  await rm(profile, { recursive: true, force: true });
  await rm(dataDir, { recursive: true, force: true });
}
