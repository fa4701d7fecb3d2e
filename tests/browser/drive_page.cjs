// Drive the server's page in headless Chromium with a fake microphone playing a wav file.
// Usage: node drive_page.cjs PLAYWRIGHT_CORE_DIR CHROMIUM URL WAV SECONDS [LISTEN]
// Stops 1.5 s after the first partial, or LISTEN seconds after the start when given (Chromium loops the
// wav: pass a time inside its trailing silence to hear it exactly once).
// Prints one JSON line: the partial texts the page showed, its final lines, its status, console errors.
"use strict";
const [pwDir, chromiumPath, url, wav, seconds, listen] = process.argv.slice(2);
const { chromium } = require(pwDir);

(async () => {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
           `--use-file-for-fake-audio-capture=${wav}`, "--autoplay-policy=no-user-gesture-required"],
  });
  const errors = [];
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    await page.goto(url);
    await page.evaluate(() => {   // record every partial the page shows
      window.partialsSeen = [];
      new MutationObserver(() => {
        const t = document.getElementById("partial").textContent;
        if (t) window.partialsSeen.push(t);
      }).observe(document.getElementById("partial"), { childList: true, characterData: true, subtree: true });
    });
    await page.click("#start");
    const limit = 1000 * Number(seconds);
    if (listen) {
      await page.waitForTimeout(1000 * Number(listen));
    } else {
      await page.waitForFunction(() => window.partialsSeen.length > 0, null, { timeout: limit });
      await page.waitForTimeout(1500);            // more speech while partials update
    }
    await page.click("#stop");
    await page.waitForFunction(() => document.getElementById("status").textContent === "done", null,
                               { timeout: limit });
    const result = await page.evaluate(() => ({
      partials: window.partialsSeen,
      finals: [...document.querySelectorAll("#finals p")].map((p) => p.lastChild.textContent),  // text, not time
      status: document.getElementById("status").textContent,
    }));
    console.log(JSON.stringify({ ...result, errors }));
  } catch (e) {
    console.log(JSON.stringify({ failure: String(e), errors }));
  } finally {
    await browser.close();
  }
})();
