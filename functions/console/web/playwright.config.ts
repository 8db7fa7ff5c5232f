import { defineConfig } from '@playwright/test';

// Debian's Chromium (apt-get install chromium); never `npx playwright install`.
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const root = typeof process.getuid === 'function' && process.getuid() === 0;

export default defineConfig({
  testDir: 'tests',
  workers: 1,
  fullyParallel: false,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: [['list']],
  outputDir: '../../../.local/playwright',
  use: {
    baseURL: process.env.CONSOLE_URL ?? 'http://127.0.0.1:3199',
    locale: 'en-US',
    timezoneId: 'Europe/Istanbul',
    viewport: { width: 1360, height: 860 },
    launchOptions: { executablePath, args: root ? ['--no-sandbox'] : [] },
    trace: 'off',
  },
});
