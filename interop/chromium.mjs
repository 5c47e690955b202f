// Headless Chromium for the interop tests: Debian's chromium, driven by playwright-core.

import { existsSync } from "node:fs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/**
 * Launch options: headless, without the sandbox and background traffic; Chromium's net-log goes to
 * $NETLOG when it is set (to see what a QUIC connection did).
 */
export const LAUNCH = {
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         ...(process.env.NETLOG ? [`--log-net-log=${process.env.NETLOG}`, "--net-log-capture-mode=Everything"] : [])],
};

/** playwright-core's `chromium`, or `fail(message)` saying what to install. */
export async function loadChromium(fail) {
  if (!existsSync(CHROMIUM)) fail(`no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  try {
    return (await import("playwright-core")).chromium;
  } catch {
    fail("playwright-core is not installed (npm install --prefix interop)");
  }
}
