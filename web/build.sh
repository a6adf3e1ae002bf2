#!/usr/bin/env bash
# Builds the web annotator into web/dist/: index.html, annotator.js (src/main.js and its modules with
# NiiVue, bundled and minified by esbuild), annotator.css and THIRD_PARTY_LICENSES.txt. Offline: nothing is
# fetched at run time. NiiVue's Zarr codecs (numcodecs: 1.4 MB of WebAssembly, imported on demand for
# blosc/lz4/zstd Zarr chunks only) are left out; the annotator reads NIfTI and NRRD. Installs the pinned packages (npm ci) only when node_modules is missing or older
# than package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
rm -rf dist
mkdir -p dist
node_modules/.bin/esbuild src/main.js --bundle --format=esm --target=es2022 --minify \
  --external:numcodecs/* --log-level=warning --metafile=dist/.meta.json --outfile=dist/annotator.js
cp src/index.html src/annotator.css dist/
node licenses.mjs dist/.meta.json > dist/THIRD_PARTY_LICENSES.txt
rm dist/.meta.json
ls -l dist
