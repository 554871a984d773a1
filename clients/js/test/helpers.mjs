// What the node:test files share: the servers test/e2e/test_js_client.py
// started (from the environment), SQL through psql, waiting for a
// condition with a generous deadline, and the pg_ws worker's restart.
//
//   PGWS_URL, PGWS_PSQL          a cluster with pg_ws.auth = none: its
//                                ws:// base URL and a psql command line
//                                (a JSON array) for its database
//   PGWS_JWT_URL, PGWS_JWT_PSQL  the same for a cluster with pg_ws.auth =
//                                jwt and pg_ws.jwt_leeway = 0

import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

export const PLAIN = { url: need("PGWS_URL"), psql: JSON.parse(need("PGWS_PSQL")) };
export const JWT = { url: need("PGWS_JWT_URL"), psql: JSON.parse(need("PGWS_JWT_PSQL")) };

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests with test/e2e/test_js_client.py`);
  return v;
}

/** Run statements (each its own -c, in one session); the rows of them
 * all, one string per line. */
export async function sql(server, ...stmts) {
  const args = [...server.psql.slice(1), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"];
  for (const s of stmts) args.push("-c", s);
  const { stdout } = await run(server.psql[0], args);
  return stdout.split("\n").filter((l) => l !== "");
}

/** Wait until cond() is true (or returns something true), and return
 * it; fail after timeout ms, saying what did not happen and, from
 * detail(), what there was. */
export async function waitFor(what, cond, detail = () => "", timeout = 30000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout / 1000} s. ${detail()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The pg_ws worker's pid. */
export async function workerPid(server) {
  const [pid] = await sql(server, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_ws'");
  return pid;
}

/** Terminate the pg_ws worker (the postmaster starts another a second
 * later); its subscribers are closed with 1001. */
export async function terminateWorker(server) {
  const pid = await waitFor("a pg_ws worker", () => workerPid(server));
  await sql(server, `SELECT pg_terminate_backend(${pid})`);
  return pid;
}

/** Ids for this file's rows, apart from every other file's (they share
 * the clusters): a block of 100000 from the file's name. */
export function idBase(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 9973;
  return (h + 1) * 100000;
}

/** A client that records what it is told. */
export function recorder() {
  const r = { msgs: [], opens: 0, closes: [], errors: [], resyncs: [] };
  r.hooks = {
    onOpen: () => r.opens++,
    onClose: (info) => r.closes.push(info),
    onError: (e) => r.errors.push(e),
  };
  r.ids = (event) => r.msgs.filter((m) => !event || m.event === event).map((m) => m.data.id);
  r.detail = () => `${r.msgs.length} messages (last: ${JSON.stringify(r.msgs.slice(-3).map((m) => [m.event, m.data.id, m.seq]))}),`
    + ` ${r.opens} opens, closes ${JSON.stringify(r.closes)}, errors ${r.errors.map(String)}`;
  return r;
}

/** Every seq strictly greater than the one before (one epoch). */
export function increasing(msgs) {
  for (let i = 1; i < msgs.length; i++)
    if (msgs[i].epoch === msgs[i - 1].epoch && msgs[i].seq <= msgs[i - 1].seq) return false;
  return true;
}

export const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
