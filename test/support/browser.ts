import { chromium, type Browser, type Cookie, type BrowserContext } from 'playwright-core';

/**
 * Headless Chromium for end-to-end tests (playwright-core drives the system browser; no download).
 * `CHROMIUM_PATH` overrides the executable.
 */

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: CHROMIUM_ARGS, headless: true });
}

/** The cookie `name` the context would send to `url`, if any. */
export async function cookieFor(context: BrowserContext, url: string, name: string): Promise<Cookie | undefined> {
  const cookies = await context.cookies(url);
  return cookies.find((cookie) => cookie.name === name);
}
