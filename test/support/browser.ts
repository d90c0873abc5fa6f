/**
 * Debian's Chromium driven by playwright-core, for tests that click through pages as a
 * person would. Under CI=true a missing browser is a failure; locally the caller may skip.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function browserAvailable(): boolean {
  const available = existsSync(CHROMIUM_PATH);
  if (!available && process.env.CI === 'true') {
    throw new Error(`Chromium is required under CI but missing at ${CHROMIUM_PATH} (apt-get install -y chromium)`);
  }
  if (!available) {
    console.warn(`\n*** SKIPPING BROWSER TESTS: no Chromium at ${CHROMIUM_PATH} (apt-get install -y chromium) ***\n`);
  }
  return available;
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}
