// Launches Debian's chromium (CHROMIUM, default /usr/bin/chromium) headless through playwright-core, the same way
// for every browser test: its own throw-away profile, self-signed certificates accepted (the bot's dashboard),
// no background traffic. Returns { context, close }; close() also removes the profile.

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function launch(tag) {
  const profile = mkdtempSync(join(tmpdir(), `aegis-chromium-${tag}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1400, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}
