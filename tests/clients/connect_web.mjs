// The Connect scenario in headless Chromium with connect-web's default transport (the
// Connect protocol over fetch), JSON then binary: connect_web_entry.mjs is bundled by esbuild
// and loaded into a page of the service's own origin. Run by tests/api/connect.rs; prints
// what it saw as one JSON object ({json, binary}).
//
// Usage: node connect_web.mjs API_URL TOKEN CHROMIUM

import { build } from "esbuild";
import { chromium } from "playwright-core";

const [api, token, executablePath] = process.argv.slice(2);
const bundle = await build({
  entryPoints: ["connect_web_entry.mjs"],
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "es2022",
  write: false,
  logLevel: "error",
});
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const seen = {};
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(`${api}/healthz`);
  await page.addScriptTag({ content: bundle.outputFiles[0].text });
  for (const [format, binary] of [["json", false], ["binary", true]]) {
    seen[format] = await page.evaluate(
      ({ api, token, binary }) => window.connectScenario(api, token, binary),
      { api, token, binary },
    );
  }
  seen.pageErrors = errors;
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
