/*
 * PgWsClient: one subscription to pg_ws that stays connected.  It owns the
 * subscription's state across connections: the position to resume after
 * (?since=), the token and its renewal (the auth message, README.md "Who
 * may subscribe"), resync_required, the backoff between attempts, and
 * handing each message to the application's handlers once.  How bytes
 * travel is the transport's (transport.ts).
 */

import type { DocumentEvents, Message, MessageOf, Position, ResyncInfo } from "./events.js";
import {
  sseTransport,
  webSocketTransport,
  type CloseInfo,
  type Connection,
  type EventSourceConstructor,
  type Transport,
  type WebSocketConstructor,
} from "./transport.js";

/** What onResync may return: a position to subscribe from instead (a
 * pg_ws_position() taken with the reloaded rows), or nothing to carry on
 * with the live stream after the resync_required message. */
export type ResyncResult = string | Position | null | undefined | void;

export interface PgWsClientOptions {
  /** pg_ws's address: "wss://ws.example.com:8765" (a path ending in /ws/
   * is taken too).  Default: the page's own host. */
  url?: string;
  /** ?events=: names and prefixes ending in "*" */
  events?: string | readonly string[];
  /** ?filter=: "device_id=eq.cam-7&score=gte.90", or {device_id:
   * "eq.cam-7", score: "gte.90"} */
  filter?: string | Readonly<Record<string, string>>;
  /** where to start: a pg_ws_position() text, or a message's {seq,
   * epoch}; default the live stream */
  since?: string | Position | null;
  /** a token to connect with */
  token?: string;
  /** a fresh token: called to connect when there is none (or it expires
   * soon), and before it expires to renew it on the open connection */
  getToken?: () => string | Promise<string>;
  /** renew a token this many seconds before it expires (default 30, or
   * half its lifetime when that is shorter) */
  refreshBefore?: number;
  /** the WebSocket constructor (default: the global one) */
  WebSocket?: WebSocketConstructor;
  /** the EventSource constructor, for transport "sse" (default: the
   * global one) */
  EventSource?: EventSourceConstructor;
  /** how to reach pg_ws: "websocket" (/ws/, the default), "sse" (GET
   * /events over an EventSource), or a Transport */
  transport?: "websocket" | "sse" | Transport;
  /** backoff between attempts, in ms: a random delay between half and all
   * of initialDelay * 2^attempt, at most maxDelay (500, 15000); false:
   * never reconnect */
  reconnect?: false | { initialDelay?: number; maxDelay?: number };
  /** resync_required: the position asked for cannot be honoured (see
   * ResyncResult).  Messages that arrive while a promise it returns is
   * pending are held, then handed on or dropped. */
  onResync?: (info: ResyncInfo, message: Message<"resync_required", ResyncInfo>)
    => ResyncResult | Promise<ResyncResult>;
  onOpen?: () => void;
  onClose?: (info: CloseInfo) => void;
  /** what went wrong without stopping the client: a handler that threw,
   * getToken failing, a message that does not parse */
  onError?: (error: unknown) => void;
}

export type ClientState = "connecting" | "open" | "waiting" | "closed";

type Handler = (data: any, message: any) => void;

const RESYNC = "resync_required";

/** exp of a JWT, in ms on this machine's clock, from the token's own
 * lifetime (iat to exp) when it has one, so that a skewed clock does not
 * renew too late; null if it has none */
function expiry(token: string, received: number): number | null {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const { exp, iat } = JSON.parse(atob(b64));
    if (typeof exp != "number") return null;
    return typeof iat == "number" && exp > iat
      ? Math.min(exp * 1000, received + (exp - iat) * 1000)
      : exp * 1000;
  } catch {
    return null;
  }
}

export class PgWsClient<Custom extends object = {}> {
  private o: PgWsClientOptions;
  private t: Transport;
  private base: string;
  private conn: Connection | null = null;
  private gen = 0;               // the current attempt; older ones' callbacks are ignored
  private attempt = 0;           // failed attempts in a row, for the backoff
  private timer: any = null;     // the next attempt, or the token's renewal
  private tok: string | null;
  private tokExp: number | null = null;
  private pos: string | Position | null;
  /** the pg_ws_position() the stream started from, kept past its first
   * events: a reconnection sends it with the last event's position
   * (?since=P&after=SEQ), so that what its snapshot saw is still skipped */
  private snap: string | null;
  private held: Message[] | null = null;  // while onResync's promise is pending
  private handlers = new Map<string, Set<Handler>>();
  private good = false;          // the current connection worked: delivered, or lasted
  private openedAt = 0;
  private rs = 0;                // the current resync's callback
  /** where the client is */
  state: ClientState = "connecting";

  constructor(options: PgWsClientOptions = {}) {
    this.o = options;
    const t = options.transport;
    this.t = typeof t == "object" ? t
      : t == "sse" ? sseTransport({ EventSource: options.EventSource })
      : webSocketTransport(options.WebSocket);
    this.pos = options.since || null;
    this.snap = typeof this.pos == "string" ? this.pos : null;
    this.tok = options.token || null;
    if (this.tok) this.tokExp = expiry(this.tok, Date.now());
    let url = options.url;
    if (!url) {
      const l = (globalThis as any).location;
      if (!l) throw new Error("pg-ws-client: options.url is required outside a page");
      url = (l.protocol == "https:" ? "wss://" : "ws://") + l.host + "/";
    }
    // the endpoint's own path is the transport's
    this.base = url.replace(/[?#].*/, "").replace(/\/(ws\/?|events)$/, "").replace(/\/?$/, "/");
    this.connect();
  }

  /** The position of the last message handed on (while a handler runs,
   * that message's), or the since given: what a reconnection resumes
   * after.  Keep it to resume in a later page. */
  get position(): string | Position | null {
    return this.pos;
  }

  /**
   * Call handler for each message of event name (a name, a prefix ending
   * in "*", or "*" for every event) with its data and the whole message;
   * returns a function that removes it.
   */
  on<K extends keyof (DocumentEvents & Custom) & string>(
    event: K,
    handler: (data: (DocumentEvents & Custom)[K], message: Message<K, (DocumentEvents & Custom)[K]>) => void,
  ): () => void;
  on(event: "*", handler: (data: unknown, message: MessageOf<DocumentEvents & Custom>) => void): () => void;
  on(event: string, handler: (data: unknown, message: Message) => void): () => void;
  on(event: string, handler: Handler): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(handler);
    this.conn?.listen?.(event);
    return () => set!.delete(handler);
  }

  /** Stop: close the connection and never reconnect. */
  close(): void {
    this.state = "closed";
    this.gen++;
    this.rs++;
    this.held = null;
    clearTimeout(this.timer);
    if (this.conn) this.conn.close();
    this.conn = null;
  }

  private err(e: unknown) {
    try {
      if (this.o.onError) this.o.onError(e);
    } catch {
      /* nowhere left to say it */
    }
  }

  /** an application's callback: what it throws goes to onError, and the
   * client goes on */
  private call(f: ((...a: any[]) => void) | undefined, ...args: any[]) {
    try {
      if (f) f(...args);
    } catch (e) {
      this.err(e);
    }
  }

  private url(): string {
    const q: string[] = [];
    const o = this.o;
    const p = this.pos;
    const enc = encodeURIComponent;
    if (typeof p == "string") q.push("since=" + enc(p));
    else if (p && this.snap) q.push("since=" + enc(this.snap), "after=" + p.seq, "epoch=" + enc(p.epoch));
    else if (p) q.push("since=" + p.seq, "epoch=" + enc(p.epoch));
    if (o.events)
      q.push("events=" + (typeof o.events == "string" ? [o.events] : o.events).map(enc).join(","));
    if (o.filter)
      q.push("filter=" + enc(typeof o.filter == "string" ? o.filter
        : Object.entries(o.filter).map(([k, v]) => k + "=" + v).join("&")));
    if (this.tok) q.push("token=" + enc(this.tok));
    return this.base + this.t.path + (q.length ? "?" + q.join("&") : "");
  }

  /** ms until the token should be renewed (negative: now) */
  private renewIn(): number {
    if (this.tokExp == null) return Infinity;
    const left = this.tokExp - Date.now();
    const before = (this.o.refreshBefore ?? 30) * 1000;
    return left > 2 * before ? left - before : left / 2;
  }

  private async connect() {
    const gen = ++this.gen;
    this.state = "connecting";
    this.good = false;
    try {
      if (this.o.getToken && (!this.tok || this.renewIn() < 1000)) {
        const tok = await this.o.getToken();
        if (gen != this.gen) return;
        this.setToken(tok);
      }
      const conn = (this.conn = this.t.open(this.url(), {
        open: () => gen == this.gen && this.opened(),
        message: (text) => gen == this.gen && this.message(text),
        close: (info) => gen == this.gen && this.closed(info),
      }));
      // the names it is asked for, and those of the handlers
      if (conn.listen) {
        const e = this.o.events;
        for (const k of (typeof e == "string" ? [e] : e || []).concat([...this.handlers.keys()]))
          conn.listen(k);
      }
    } catch (e) {
      if (gen != this.gen) return;
      this.err(e);
      this.closed({ code: 1006, reason: String(e), opened: false });
    }
  }

  private setToken(tok: string) {
    this.tok = tok;
    this.tokExp = expiry(tok, Date.now());
  }

  private opened() {
    this.state = "open";
    this.openedAt = Date.now();
    this.schedule();
    this.call(this.o.onOpen);
  }

  /** renew the token before it expires, on this connection */
  private schedule() {
    clearTimeout(this.timer);
    const ms = this.renewIn();
    if (!this.o.getToken || ms == Infinity) return;
    const gen = this.gen;
    this.timer = setTimeout(async () => {
      let tok: string;
      try {
        tok = await this.o.getToken!();
      } catch (e) {
        if (gen != this.gen || !this.conn) return;
        this.err(e);
        this.schedule();    // again, at half what is left
        return;
      }
      if (gen != this.gen) return;
      this.setToken(tok);
      if (!this.conn) return;    // it closed meanwhile: the next one takes tok
      if (this.t.canSend) {
        this.conn.send(JSON.stringify({ type: "auth", token: tok }));
        this.schedule();
      } else {
        // a transport that cannot send renews by reconnecting at its position
        this.conn.close();
        this.connect();
      }
    }, Math.max(ms, 1000));
  }

  private closed(info: CloseInfo) {
    this.conn = null;
    clearTimeout(this.timer);
    // a connection that worked starts the backoff afresh
    if (info.opened && Date.now() - this.openedAt > 5000) this.good = true;
    this.attempt = this.good ? 0 : this.attempt + 1;
    this.call(this.o.onClose, info);
    if (this.state == "closed") return;
    // a refused or expired token, or a refused upgrade (a 401 shows as
    // nothing more): the next attempt takes a fresh one.  A token past
    // its exp has expired whatever the close said (an EventSource's
    // closes say nothing)
    const expired = info.code == 4001 || (this.tokExp != null && this.tokExp <= Date.now());
    if (expired || !info.opened) {
      if (this.o.getToken) this.tok = null;
      else if (expired) {
        this.err(new Error("pg-ws-client: " + (info.reason || "token expired or refused")
          + ", and there is no getToken to renew it"));
        this.close();
        return;
      }
    }
    const r = this.o.reconnect;
    if (r === false) {
      this.close();
      return;
    }
    this.state = "waiting";
    const max = (r && r.maxDelay) || 15000;
    const d = Math.min(max, ((r && r.initialDelay) || 500) * 2 ** Math.min(this.attempt, 30));
    this.timer = setTimeout(() => this.connect(), d / 2 + (Math.random() * d) / 2);
  }

  private message(text: string) {
    let m: Message;
    try {
      m = JSON.parse(text);
    } catch (e) {
      this.err(e);
      return;
    }
    this.good = true;
    if (this.held) this.held.push(m);
    else this.deliver(m);
  }

  private deliver(m: Message) {
    const p = this.pos;
    if (m.event == RESYNC) {
      // the rows are reloaded: the snapshot they came with is no more
      this.snap = null;
      this.pos = { seq: m.seq, epoch: m.epoch };
      this.resync(m as Message<"resync_required", ResyncInfo>);
      return;
    }
    // never the same event twice, whatever a reconnection brings
    if (p && typeof p != "string" && p.epoch == m.epoch && m.seq <= p.seq) return;
    this.pos = { seq: m.seq, epoch: m.epoch };
    const name = m.event;
    for (const [k, set] of this.handlers)
      if (k == name || (k.endsWith("*") && name.startsWith(k.slice(0, -1))))
        for (const h of set) this.call(h, m.data, m);
  }

  private resync(m: Message<"resync_required", ResyncInfo>) {
    if (!this.o.onResync) return;
    let r: ResyncResult | Promise<ResyncResult>;
    try {
      r = this.o.onResync(m.data, m);
    } catch (e) {
      this.err(e);
      return;
    }
    const rs = ++this.rs;
    if (r && typeof (r as any).then == "function") {
      // held across reconnections too, in order, until it settles
      this.held = [];
      (r as Promise<ResyncResult>).then(
        (v) => rs == this.rs && this.resumeAfterResync(v),
        (e) => {
          this.err(e);
          if (rs == this.rs) this.resumeAfterResync(null);
        });
    } else this.resumeAfterResync(r as ResyncResult);
  }

  /** after onResync: subscribe from the position it gave, or hand on what
   * came meanwhile and carry on */
  private resumeAfterResync(v: ResyncResult) {
    const held = this.held || [];
    this.held = null;
    if (this.state == "closed") return;
    if (v) {
      this.pos = v;
      this.snap = typeof v == "string" ? v : null;
      if (this.conn) this.conn.close();
      this.conn = null;
      this.attempt = 0;
      clearTimeout(this.timer);
      this.connect();
      return;
    }
    for (const m of held) {
      // another resync among them holds the rest
      const h = this.held as Message[] | null;
      if (h) h.push(m);
      else this.deliver(m);
    }
  }
}
