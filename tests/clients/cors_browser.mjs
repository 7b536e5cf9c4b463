// A page on another origin calls the service from headless Chromium, as a browser client
// does: REST with the headers the service reads (traceparent, idempotency-key, if-match,
// x-request-id) reading the ones it exposes (etag, x-request-id, retry-after), then a
// gRPC-web call carrying grpc-metadata-*, then Connect calls (POST with its headers, GET). A second page, on an origin the service does not
// list, is refused by the browser. Run by tests/api/cors.rs; prints what it saw as JSON.
//
// Usage: node cors_browser.mjs PAGE_URL OTHER_PAGE_URL API_URL TOKEN CHROMIUM

import { chromium } from "playwright-core";

const [pageUrl, otherPageUrl, api, token, executablePath] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const seen = {};
try {
  const page = await browser.newPage();
  await page.goto(pageUrl);
  Object.assign(
    seen,
    await page.evaluate(
      async ({ api, token }) => {
        const seen = { origin: location.origin };
        const auth = { authorization: `Bearer ${token}` };
        const json = { ...auth, "content-type": "application/json" };

        let response = await fetch(`${api}/v1/customers`, {
          method: "POST",
          headers: {
            ...json,
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "idempotency-key": "5f0c6f4e-9d1a-4c1e-8f1e-2b7d3c9a0e11",
            "x-request-id": "cors-create",
          },
          body: JSON.stringify({ givenName: "Cross", familyName: "Origin", email: "cors@example.com", businessId: "GB-1" }),
        });
        const created = await response.json();
        const etag = response.headers.get("etag");
        seen.create = [response.status, response.headers.get("x-request-id"), etag === created.etag];

        response = await fetch(`${api}/v1/${created.name}`, {
          method: "PATCH",
          headers: { ...json, "if-match": etag, "x-request-id": "cors-update" },
          body: JSON.stringify({ givenName: "Crossed" }),
        });
        const updated = await response.json();
        seen.update = [
          response.status,
          response.headers.get("x-request-id"),
          updated.givenName,
          response.headers.get("etag") === updated.etag && updated.etag !== etag,
        ];

        response = await fetch(`${api}/v1/${created.name}`, {
          method: "PATCH",
          headers: { ...json, "if-match": etag },
          body: JSON.stringify({ givenName: "Late" }),
        });
        seen.stale = [response.status, (await response.json()).error.status];

        // The full view asks the business registry, which is down: 503 and when to retry.
        response = await fetch(`${api}/v1/${created.name}?view=FULL`, { headers: auth });
        seen.unavailable = [response.status, response.headers.get("retry-after")];

        // gRPC-web: GetCustomerRequest { name = 1 } in one length-prefixed frame.
        async function grpcWeb(name) {
          const message = new TextEncoder().encode(name);
          const frame = new Uint8Array(7 + message.length);
          frame.set([0, 0, 0, 0, 2 + message.length, 0x0a, message.length]);
          frame.set(message, 7);
          const response = await fetch(`${api}/customer.v1.CustomerService/GetCustomer`, {
            method: "POST",
            headers: {
              ...auth,
              "content-type": "application/grpc-web+proto",
              "x-grpc-web": "1",
              "grpc-metadata-tenant": "acme",
              "x-request-id": "cors-grpc-web",
            },
            body: frame,
          });
          const body = new TextDecoder("latin1").decode(await response.arrayBuffer());
          return { response, body };
        }
        let call = await grpcWeb(created.name);
        seen.grpcWeb = [
          call.response.status,
          call.response.headers.get("x-request-id"),
          call.body.includes("cors@example.com"),
          /grpc-status:\s*0\r\n/.test(call.body),
        ];
        // Trailers-only: the status is in the headers, which scripts may read.
        call = await grpcWeb("customers/00000000-0000-0000-0000-000000000000");
        seen.grpcWebNotFound = [call.response.headers.get("grpc-status"), call.body.length];

        // Connect: a unary JSON call with the protocol's headers (preflighted), and a GET read.
        response = await fetch(`${api}/customer.v1.CustomerService/GetCustomer`, {
          method: "POST",
          headers: {
            ...json,
            "connect-protocol-version": "1",
            "connect-timeout-ms": "10000",
            "x-request-id": "cors-connect",
          },
          body: JSON.stringify({ name: created.name }),
        });
        seen.connect = [
          response.status,
          response.headers.get("x-request-id"),
          (await response.json()).givenName,
        ];
        const query = new URLSearchParams({
          connect: "v1",
          encoding: "json",
          message: JSON.stringify({ name: created.name }),
        });
        response = await fetch(`${api}/customer.v1.CustomerService/GetCustomer?${query}`, {
          headers: auth,
        });
        seen.connectGet = [response.status, (await response.json()).givenName];
        return seen;
      },
      { api, token },
    ),
  );

  const other = await browser.newPage();
  await other.goto(otherPageUrl);
  seen.otherOrigin = await other.evaluate(async ({ api, token }) => {
    try {
      await fetch(`${api}/v1/customers`, { headers: { authorization: `Bearer ${token}` } });
      return "answered";
    } catch (error) {
      return error.name;
    }
  }, { api, token });
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
