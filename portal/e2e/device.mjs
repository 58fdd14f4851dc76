// The cashier page's device id in a real browser: `node device.mjs <checkout url>` prints the id
// the card form carries, the signals it hashed, the id after a reload, and any page problems.
import { launch, watch } from "./browser.mjs";

const url = process.argv[2];
const browser = await launch();
try {
  const page = await browser.context.newPage();
  const problems = watch(page);
  const read = async () => {
    await page.goto(url);
    await page.waitForFunction(() => document.querySelector('input[name="device_id"]')?.value);
    return page.evaluate(async () => ({
      field: document.querySelector('input[name="device_id"]').value,
      id: await window.juheDevice.id,
      signals: window.juheDevice.signals(),
    }));
  };
  const first = await read();
  const again = await read();
  console.log(JSON.stringify({ ...first, again: again.id, problems }));
} finally {
  await browser.close();
}
