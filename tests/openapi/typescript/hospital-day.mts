// A hospital system's day in TypeScript, through openapi-fetch and the types openapi-typescript
// generates from hdhub's OpenAPI document (./hdhub.ts), and nothing else: a token, the menu, a
// DCD's definition, a v2 submission refused (the problem read) and one accepted, the list paged,
// and the registration followed until the central platform confirms it.
// tests/openapi/test_typescript_client.py type-checks it (tsc, strict) and runs it with node
// against the running platform: HDHUB_URL, HDHUB_CLIENT_ID, HDHUB_CLIENT_SECRET, and
// HDHUB_RECORD (a valid ANGIO_HOSP record as JSON).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import createClient from "openapi-fetch";

import type { components, paths } from "./hdhub.js";

type Problem = components["schemas"]["Problem"];
type SubmitBody = paths["/proxy/api/dcd/payload/submit"]["post"]["requestBody"]["content"]["application/json"];
type RegistrationPage = components["schemas"]["RegistrationPage"];

function setting(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") throw new Error(`${name} is not set`);
  return value;
}

const baseUrl = setting("HDHUB_URL");
const record = JSON.parse(setting("HDHUB_RECORD")) as SubmitBody;
const anonymous = createClient<paths, `application/${string}json`>({ baseUrl });

// The token: client credentials, as a form.
const issued = await anonymous.POST("/realms/hdhub/protocol/openid-connect/token", {
  body: {
    grant_type: "client_credentials",
    client_id: setting("HDHUB_CLIENT_ID"),
    client_secret: setting("HDHUB_CLIENT_SECRET"),
  },
  bodySerializer: (form) =>
    new URLSearchParams(
      Object.entries(form).flatMap(([k, v]): [string, string][] => (typeof v === "string" ? [[k, v]] : [])),
    ),
  headers: { "Content-Type": "application/x-www-form-urlencoded" },
});
assert.ok(issued.data, `token: HTTP ${issued.response.status}`);
const tokenType: "Bearer" = issued.data.token_type;
const client = createClient<paths, `application/${string}json`>({ baseUrl, headers: { Authorization: `${tokenType} ${issued.data.access_token}` } });

// The menu needs no token; the definition does.
const menu = await anonymous.GET("/proxy/api/dcd/menu/structure");
assert.ok(menu.data, `menu: HTTP ${menu.response.status}`);
const dcd = menu.data.flatMap((project) => project.dcds).find((d) => d.dcdCode === "ANGIO_HOSP");
assert.ok(dcd, "ANGIO_HOSP is on the menu");
const dcdNumber: number = dcd.dcdId;
const definition = await client.GET("/proxy/api/dcd/payload/definition", {
  params: { query: { "dcd-id": String(dcdNumber) } },
});
assert.ok(definition.data, `definition: HTTP ${definition.response.status}`);
const keys = new Set(definition.data.fields.map((field) => field.key));
assert.ok(keys.has("IDC_PAT") && definition.data.businessKey.every((key) => keys.has(key)));

// A record with a wrong SSIN: 422, a Problem naming the field and the rule, in Dutch.
const query = { "organization-id": "az-demo", "dcd-id": "ANGIO_HOSP" } as const;
const refused = await client.POST("/proxy/api/dcd/payload/submit", {
  params: { query, header: { "Accept-Language": "nl" } },
  body: { ...record, IDC_PAT: "85040216933" },
});
assert.equal(refused.response.status, 422);
const problem: Problem | undefined = refused.error;
assert.ok(problem && problem.type.startsWith("/problems/"), JSON.stringify(problem));
const broken = (problem.errors ?? []).map((e) => `${e.field} ${e.rule}`);
assert.ok(broken.includes("IDC_PAT ssin"), broken.join(", "));

// The record as it should be, with an Idempotency-Key: 202, and the same answer on a retry.
const header = { "Idempotency-Key": `ts-${randomUUID()}` };
const accepted = await client.POST("/proxy/api/dcd/payload/submit", { params: { query, header }, body: record });
assert.equal(accepted.response.status, 202, JSON.stringify(accepted.error));
assert.ok(accepted.data);
const retried = await client.POST("/proxy/api/dcd/payload/submit", { params: { query, header }, body: record });
assert.equal(retried.response.headers.get("Idempotent-Replayed"), "true");
assert.equal(retried.data?.registrationId, accepted.data.registrationId);

// The list, one page: the registration found by its business key, and its history paged.
const page = await client.GET("/api/v1/registrations", {
  params: { query: { organisation_id: "az-demo", business_key: accepted.data.businessKey, limit: 1 } },
});
assert.ok(page.data, `list: HTTP ${page.response.status}`);
const listed: RegistrationPage = page.data;
const next: string | null = listed.next;
assert.deepEqual(
  listed.items.map((r) => r.id),
  [accepted.data.registrationId],
);
assert.equal(next, null);
const history = await client.GET("/api/v1/registrations/{registration_id}/history", {
  params: { path: { registration_id: accepted.data.registrationId }, query: { limit: 1, offset: 1 } },
});
assert.ok(history.data, `history: HTTP ${history.response.status}`);
assert.ok(history.data.total >= 2 && history.data.offset === 1);
assert.deepEqual(
  history.data.items.map((entry) => entry.action),
  ["submit"],
);

// Followed until the central platform confirms its arrival: Submitted, confirmation "ok".
type Confirmation = components["schemas"]["StatusConfirmation"];
let confirmation: Confirmation | null | undefined;
for (let attempt = 0; attempt < 300 && confirmation !== "ok"; attempt++) {
  if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 200));
  const read = await client.GET("/api/v1/registrations/{registration_id}", {
    params: { path: { registration_id: accepted.data.registrationId } },
  });
  assert.ok(read.data, `registration: HTTP ${read.response.status}`);
  assert.ok(["sending", "submitted"].includes(read.data.status), read.data.status);
  confirmation = read.data.status_confirmation;
}
assert.equal(confirmation, "ok");

// What the types refuse (tsc fails on an unused @ts-expect-error: the types are not `any`).
export function refusedByTheTypes(): void {
  // @ts-expect-error: a page has no `count`
  void listed.count;
  // @ts-expect-error: the v2 submission names its organisation
  void client.POST("/proxy/api/dcd/payload/submit", { params: { query: { "dcd-id": "ANGIO_HOSP" } }, body: record });
  // @ts-expect-error: a problem's `status` is a number
  const status: string = problem.status;
  void status;
}

console.log(`hospital day: ok (${accepted.data.registrationId})`);
