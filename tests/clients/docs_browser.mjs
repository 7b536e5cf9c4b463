// The API console (/docs, Swagger UI served from the binary) in headless Chromium, as a
// person uses it: open it, authorize with a bearer token, execute ListCustomers and
// CreateCustomer, read the answers, screenshot the page. Run by tests/api/docs.rs; prints
// what it saw as one JSON object.
//
// Usage: node docs_browser.mjs BASE_URL TOKEN CHROMIUM SCREENSHOT

import { chromium } from "playwright-core";

const [baseUrl, token, executablePath, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 2000 } });
  const failures = [];
  page.on("pageerror", (error) => failures.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") failures.push(message.text());
  });
  await page.goto(`${baseUrl}/docs`);
  await page.locator(".information-container .title").waitFor();
  seen.title = (await page.locator(".information-container .title").innerText()).split("\n")[0].trim();

  // Authorize: the bearer scheme from the document's securitySchemes.
  await page.locator(".scheme-container button.authorize").click();
  const bearer = page.locator(".auth-container").filter({ hasText: "bearerAuth" });
  await bearer.locator("input").fill(token);
  await bearer.locator("button.authorize").click();
  // Authorized, the dialog says so and offers to log out instead.
  await bearer.getByRole("button", { name: "Remove authorization" }).waitFor();
  seen.authorized = (await bearer.locator("h6").innerText()).trim() === "Authorized";
  await page.locator(".modal-ux button.btn-done").first().click();

  // Execute an operation and read its live response.
  async function execute(operationId, body) {
    const operation = page.locator(`#operations-CustomerService-${operationId}`);
    await operation.locator(".opblock-summary").first().click();
    if (body !== undefined) {
      await operation.locator("textarea.body-param__text").fill(JSON.stringify(body));
    }
    await operation.locator("button.execute").click();
    const status = operation.locator(".live-responses-table .response .response-col_status");
    await status.waitFor();
    const text = await operation
      .locator(".live-responses-table .response-col_description pre.microlight")
      .first()
      .innerText();
    return { status: Number((await status.innerText()).trim()), body: JSON.parse(text) };
  }

  const created = await execute("CreateCustomer", {
    givenName: "Console",
    familyName: "User",
    email: "console@example.com",
  });
  seen.create = [created.status, created.body.givenName, created.body.email];
  const listed = await execute("ListCustomers");
  seen.list = [listed.status, listed.body.customers.map((customer) => customer.email)];
  seen.failures = failures;
  await page.screenshot({ path: screenshot, fullPage: false });
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
