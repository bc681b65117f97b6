// Builds the console into ../mpaas/console/static: content-hashed assets and the HTML
// shell that names them. The output is deterministic (same lockfile, same bytes), so CI
// rebuilds it and fails when the committed files differ.
import { build } from 'esbuild';
import { mkdirSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
// CONSOLE_OUT builds elsewhere (CI compares that build with the committed one).
const staticDir = process.env.CONSOLE_OUT || join(here, '..', 'mpaas', 'console', 'static');
const assetsDir = join(staticDir, 'assets');
const MAX_GZIPPED_JS = 400 * 1024;

mkdirSync(assetsDir, { recursive: true });
for (const name of readdirSync(assetsDir)) rmSync(join(assetsDir, name));

const result = await build({
  entryPoints: [join(here, 'src', 'main.js'), join(here, 'src', 'style.css')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  entryNames: '[name]-[hash]',
  outdir: assetsDir,
  legalComments: 'eof',
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((n) => n.endsWith('.js'));
const css = outputs.find((n) => n.endsWith('.css'));
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mpaas console</title>
<link rel="stylesheet" href="/console/assets/${css}">
<script type="module" src="/console/assets/${js}"></script>
</head>
<body>
<div id="app"><noscript>The mpaas console needs JavaScript.</noscript></div>
</body>
</html>
`;
writeFileSync(join(staticDir, 'index.html'), html);

const gz = gzipSync(readFileSync(join(assetsDir, js)), { level: 9 }).length;
console.log(`console: ${js} (${gz} bytes gzipped), ${css}`);
if (gz > MAX_GZIPPED_JS) {
  console.error(`console: the script is ${gz} bytes gzipped, over the ${MAX_GZIPPED_JS} budget`);
  process.exit(1);
}
