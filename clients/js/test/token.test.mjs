// Tokens (pg_ws.auth = jwt, pg_ws.jwt_leeway = 0): the client renews its
// token with the auth message before it expires, so that the connection
// outlives several tokens; and when one expires all the same (the server
// closes with 4001), it takes a fresh one and resumes without a gap.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PgWsClient } from "../dist/index.js";
import { JWT, idBase, increasing, range, recorder, sql, waitFor } from "./helpers.mjs";

const BASE = idBase("token");

const mint = async (ttl) =>
  (await sql(JWT, `SELECT pg_ws_sign_token('{"sub": "js-client-test"}', '${ttl}')`))[0];

const expOf = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url")).exp * 1000;

const insert = (from, to) => sql(JWT,
  `INSERT INTO employee (id, first_name, last_name) SELECT g, 'E', 'Mp' FROM generate_series(${from}, ${to}) g`);

test("renews a 3-second token with the auth message: one connection outlives two tokens", async () => {
  const r = recorder();
  const tokens = [];
  const c = new PgWsClient({
    url: JWT.url, events: "employee_create", reconnect: { initialDelay: 100, maxDelay: 1000 }, ...r.hooks,
    getToken: async () => {
      const t = await mint("3 seconds");
      tokens.push(t);
      return t;
    },
  });
  c.on("employee_create", (d, msg) => r.msgs.push(msg));
  try {
    await waitFor("the connection", () => r.opens === 1, r.detail);
    await insert(BASE + 1, BASE + 1);
    await waitFor("an event with the first token", () => r.ids().includes(BASE + 1), r.detail);
    // 3 s past the first token's end, and past the second's: pg_ws closes
    // a connection whose token expired within a second (conn.c's
    // housekeeping), and sends it nothing after its end
    const end = expOf(tokens[0]) + 3000;
    await waitFor("two tokens' lifetimes", () => Date.now() > end && tokens.length >= 3,
      () => `${tokens.length} tokens; ${r.detail()}`, 60000);
    await insert(BASE + 2, BASE + 2);
    await waitFor("an event after the first tokens expired", () => r.ids().includes(BASE + 2), r.detail);
    assert.equal(r.opens, 1, "one connection");
    assert.deepEqual(r.closes, [], "never closed");
    assert.deepEqual(r.ids(), [BASE + 1, BASE + 2]);
    assert.deepEqual(r.errors, []);
  } finally {
    c.close();
  }
});

test("a token that expires all the same (4001): a fresh one, and the stream resumes without a gap", async () => {
  const r = recorder();
  let calls = 0;
  let open = false;
  let letIn;
  const reconnecting = new Promise((resolve) => (letIn = resolve));
  const c = new PgWsClient({
    url: JWT.url, events: "employee_create", reconnect: { initialDelay: 100, maxDelay: 1000 },
    ...r.hooks,
    onOpen: () => { open = true; r.opens++; },
    onClose: (info) => { open = false; r.closes.push(info); },
    // the first connection's token lives 2 s and cannot be renewed (the
    // backend fails while the connection is open); the reconnection waits
    // until the test has committed rows, then gets a token of a minute
    getToken: async () => {
      calls++;
      if (calls === 1) return mint("2 seconds");
      if (open && r.closes.length === 0) throw new Error("the token endpoint is down");
      await reconnecting;
      return mint("60 seconds");
    },
  });
  c.on("employee_create", (d, msg) => r.msgs.push(msg));
  const id = BASE + 100;
  try {
    await waitFor("the connection", () => r.opens === 1, r.detail);
    await insert(id + 1, id + 3);
    await waitFor("the first rows", () => r.ids().includes(id + 3), r.detail);
    await waitFor("the server closing the expired connection", () => r.closes.length === 1, r.detail, 60000);
    assert.equal(r.closes[0].code, 4001);
    assert.equal(r.closes[0].reason, "token expired");
    await insert(id + 4, id + 6);       // while it is not connected
    letIn();
    await waitFor("the reconnection", () => r.opens === 2, r.detail);
    await insert(id + 7, id + 9);
    await waitFor("the last rows", () => r.ids().includes(id + 9), r.detail);
    assert.deepEqual(r.ids(), range(id + 1, id + 9), "every row once");
    assert.ok(increasing(r.msgs));
    assert.ok(r.errors.length >= 1 && r.errors.every((e) => /endpoint is down/.test(e.message)),
      "getToken's failures reach onError: " + r.errors.map(String));
  } finally {
    c.close();
  }
});

test("a static token without getToken: the client stops at 4001 and says why", async () => {
  const r = recorder();
  const c = new PgWsClient({ url: JWT.url, token: await mint("2 seconds"), reconnect: { initialDelay: 100 }, ...r.hooks });
  try {
    await waitFor("the connection", () => r.opens === 1, r.detail);
    await waitFor("the 4001 close", () => r.closes.length === 1, r.detail, 60000);
    assert.equal(r.closes[0].code, 4001);
    await waitFor("the client stopping", () => c.state === "closed", r.detail);
    assert.match(String(r.errors[0]), /no getToken/);
  } finally {
    c.close();
  }
});
