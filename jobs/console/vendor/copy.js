// Copies the built browser files the console serves into ../static/vendor/ (committed, so
// the console needs no npm and no CDN at run time). Run after `npm ci`: `npm run vendor`.
"use strict";
const fs = require("fs");
const path = require("path");

const out = path.join(__dirname, "..", "static", "vendor");
const files = [
  ["hls.js/dist/hls.min.js", "hls.min.js"],
  ["hls.js/LICENSE", "hls.js.LICENSE"],
  // DASH-only packages: the media player build (no offline, protection or reporting)
  ["dashjs/dist/modern/umd/dash.mediaplayer.min.js", "dash.mediaplayer.min.js"],
  ["dashjs/LICENSE.md", "dashjs.LICENSE.md"],
];
fs.mkdirSync(out, { recursive: true });
for (const [from, to] of files) {
  fs.copyFileSync(path.join(__dirname, "node_modules", from), path.join(out, to));
  console.log(`${from} -> static/vendor/${to}`);
}
