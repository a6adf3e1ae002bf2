// Prints the licence texts of the npm packages esbuild put into the bundle (read from its metafile), as
// their licences ask of redistributed copies. Usage: node licenses.mjs dist/.meta.json
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const meta = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const packages = new Set();
for (const input of Object.keys(meta.inputs)) {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m) packages.add(m[1]);
}
for (const name of [...packages].sort()) {
  const dir = join('node_modules', name);
  const { version, license } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  const text = file && existsSync(join(dir, file)) ? readFileSync(join(dir, file), 'utf8').trim() : `(no licence file; package.json says ${license})`;
  console.log(`==== ${name} ${version} (${license}) ====\n${text}\n`);
}
