import type { Plugin } from 'vite';
import { defineConfig } from 'vitest/config';
import { gzipSync } from 'node:zlib';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Writes `file.gz` beside every compressible output file: the console
 * function answers it to clients that accept gzip (API Gateway does not
 * compress Lambda answers). */
function precompress(): Plugin {
  let outDir = 'dist';
  return {
    name: 'crm-precompress',
    apply: 'build',
    configResolved(c) {
      outDir = c.build.outDir;
    },
    closeBundle() {
      const walk = (dir: string) => {
        for (const name of readdirSync(dir)) {
          const p = join(dir, name);
          if (statSync(p).isDirectory()) walk(p);
          else if (/\.(js|css|html|svg|json|wav)$/.test(name)) {
            writeFileSync(`${p}.gz`, gzipSync(readFileSync(p), { level: 9 }));
          }
        }
      };
      walk(outDir);
    },
  };
}

export default defineConfig({
  plugins: [precompress()],
  // Preact's automatic JSX runtime (tsconfig jsxImportSource).
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  resolve: {
    alias: { react: 'preact/compat', 'react-dom': 'preact/compat' },
  },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    // No inline <script>: the strict CSP forbids it.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
  },
  server: {
    // `npm run dev`: the API from a running `make run` on PORT (default 3000).
    proxy: {
      '/api': `http://127.0.0.1:${process.env.PORT ?? 3000}`,
      '/crm': `http://127.0.0.1:${process.env.PORT ?? 3000}`,
      '/local': `http://127.0.0.1:${process.env.PORT ?? 3000}`,
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
