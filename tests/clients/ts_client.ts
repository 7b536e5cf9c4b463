// The typed TypeScript client — types from openapi-typescript, calls through openapi-fetch —
// generated from the served OpenAPI document and driven through create / get / list-all-pages /
// patch / delete / error details against a live server (run by tests/api/clients.rs after
// `tsc --strict` has type-checked it against the generated types). Prints what it saw as one
// JSON object.
//
// Usage: node ts_client.js BASE_URL TOKEN

import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

// Only what this script uses of Node's globals (no @types/node needed).
declare const process: { argv: string[] };

type Customer = components["schemas"]["customer.v1.Customer"];
type ApiError = components["schemas"]["Error"];

const [baseUrl, token] = process.argv.slice(2);
const client = createClient<paths>({
  baseUrl,
  headers: { authorization: `Bearer ${token}` },
});
const seen: Record<string, unknown> = {};

function expect(condition: boolean, what: unknown): asserts condition {
  if (!condition) {
    throw new Error(`unexpected: ${JSON.stringify(what)}`);
  }
}

// Create: only the required fields.
const created: Customer[] = [];
for (const given of ["Ada", "Alan", "Grace"]) {
  const { data, response } = await client.POST("/v1/customers", {
    body: { givenName: given, familyName: "Client", email: `${given.toLowerCase()}@example.com` },
  });
  expect(response.status === 201 && data !== undefined, response.status);
  created.push(data);
}
seen.created = created.map((customer) => customer.givenName);
const adaId = created[0].name.split("/")[1];

// Get: unset messages are absent (undefined), not null.
const got = await client.GET("/v1/customers/{customer}", {
  params: { path: { customer: adaId } },
});
expect(got.data !== undefined, got.error);
seen.got = got.data.email;
seen.unsetIsAbsent = got.data.deleteTime === undefined && got.data.address === undefined;

// List every page.
const listed: string[] = [];
let pages = 0;
let pageToken: string | undefined;
for (;;) {
  const page = await client.GET("/v1/customers", {
    params: { query: { pageSize: 2, orderBy: "given_name", pageToken } },
  });
  expect(page.data !== undefined, page.error);
  pages += 1;
  listed.push(...page.data.customers.map((customer) => customer.givenName));
  if (page.data.nextPageToken === "") {
    break;
  }
  pageToken = page.data.nextPageToken;
}
seen.listed = listed;
seen.pages = pages;

// Patch one field, conditionally: the Patch body type needs nothing else.
const patch = (phone: string) =>
  client.PATCH("/v1/customers/{customer}", {
    params: { path: { customer: adaId }, header: { "If-Match": got.data.etag } },
    body: { phone },
  });
const patched = await patch("+14155550123");
expect(patched.data !== undefined, patched.error);
seen.patched = { phone: patched.data.phone, email: patched.data.email };
const stale = await patch("+14155550124");
expect(stale.error !== undefined, stale.data);
seen.staleEtag = [stale.response.status, stale.error.error.status];

// Delete: the answer carries the delete time.
const deleted = await client.DELETE("/v1/customers/{customer}", {
  params: { path: { customer: adaId } },
});
expect(deleted.data !== undefined, deleted.error);
seen.deleted = deleted.data.deleteTime !== undefined;

// Errors: the AIP-193 body with its details, typed.
const invalid = await client.POST("/v1/customers", {
  body: { givenName: "X", familyName: "Y", email: "not-an-email" },
});
expect(invalid.error !== undefined, invalid.data);
const error: ApiError = invalid.error;
const badRequest = error.error.details.find((detail) =>
  detail["@type"].endsWith("google.rpc.BadRequest"),
);
expect(badRequest !== undefined, error);
const violations = badRequest["fieldViolations"] as { field: string }[];
seen.invalid = [invalid.response.status, error.error.status, violations.map((v) => v.field)];
const missing = await client.GET("/v1/customers/{customer}", {
  params: { path: { customer: crypto.randomUUID() } },
});
expect(missing.error !== undefined, missing.data);
seen.missing = [missing.response.status, missing.error.error.status];

console.log(JSON.stringify(seen));
