#!/usr/bin/env bash
# Copies the built files of the pinned front-end libraries into the Python package.
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-save --silent
out=../veille/web/vendor
rm -rf "$out" && mkdir -p "$out/images"
cp node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css "$out/"
cp node_modules/leaflet/dist/images/*.png "$out/images/"
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css "$out/"
# axe-core is only injected by the browser tests (accessibility checks), never served.
cp node_modules/axe-core/axe.min.js "$out/"
for lib in leaflet uplot axe-core; do
  printf '%s %s\n' "$lib" "$(node -p "require('./node_modules/$lib/package.json').version")"
done > "$out/VERSIONS"
