/*
 * Transports: how the client reaches pg_ws.  A transport opens one
 * connection to a URL it is given (the client has put the position,
 * ?events=, ?filter= and the token in its query) and reports what
 * happens on it; it knows nothing of positions, tokens or reconnecting,
 * which are the client's.  Two are here: WebSocket (/ws/), and
 * Server-Sent Events (/events, over an EventSource), which cannot send:
 * the client then renews a token by reconnecting at its position instead
 * of sending the auth message.
 */

/** What a transport tells the client about its connection. */
export interface TransportHandlers {
  /** the connection is established (the upgrade was accepted) */
  open(): void;
  /** one message's text, as pg_ws sent it */
  message(text: string): void;
  /**
   * The connection ended, or could not be made (opened false: refused,
   * unreachable, or an HTTP answer such as 401, which browsers do not
   * show).  Called once; never after the client's own close().
   */
  close(info: CloseInfo): void;
}

/** How a connection ended. */
export interface CloseInfo {
  /** the WebSocket close code (1001: the worker restarted; 4001: the token
   * expired or was refused; 1006: no close frame) */
  code: number;
  reason: string;
  /** whether the connection had been established */
  opened: boolean;
}

/** One open connection. */
export interface Connection {
  /** send a text message (the auth message); only if canSend */
  send(text: string): void;
  /** close it; its handlers are not called any more */
  close(): void;
  /**
   * The client wants the messages of this event (a name, or a prefix
   * ending in "*"), which a transport that receives only the names it
   * asked for (an EventSource) must then listen to; others ignore it.
   */
  listen?(event: string): void;
}

/** A way to reach pg_ws. */
export interface Transport {
  /** the endpoint's path below the base URL: "ws/" */
  readonly path: string;
  /** whether a connection can send the auth message */
  readonly canSend: boolean;
  /** open a connection to url (base URL + path + query) */
  open(url: string, handlers: TransportHandlers): Connection;
}

/** What the client needs of a WebSocket: the browser's, Node 22's global
 * one (Node 20: --experimental-websocket), or the `ws` package's. */
// (the handlers' events are any: the DOM's WebSocket types them as its
// own MessageEvent and CloseEvent, which a narrower type here would not
// accept as handlers' parameters)
export interface WebSocketLike {
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** pg_ws's /ws/ over a WebSocket: WS, or the global WebSocket. */
export function webSocketTransport(WS?: WebSocketConstructor): Transport {
  return {
    path: "ws/",
    canSend: true,
    open(url, h) {
      const Ctor: WebSocketConstructor | undefined = WS || (globalThis as any).WebSocket;
      if (!Ctor)
        throw new Error("pg-ws-client: no WebSocket here: pass options.WebSocket"
          + " (Node 20 has one with --experimental-websocket)");
      const ws = new Ctor(url.replace(/^http/, "ws"));
      let opened = false;
      const detach = () => {
        ws.onopen = ws.onmessage = ws.onclose = null;
        // the error event of a socket closed before it opened
        ws.onerror = () => {};
      };
      const ended = (code: number, reason: string) => {
        detach();
        h.close({ code, reason, opened });
      };
      ws.onopen = () => {
        opened = true;
        h.open();
      };
      ws.onmessage = (e: { data: unknown }) => h.message(String(e.data));
      ws.onclose = (e: { code: number; reason: string }) => ended(e.code, e.reason);
      // an error ends the connection as a close without a code would;
      // Node 20's WebSocket fires no close event after a failed attempt
      ws.onerror = () => {
        ended(1006, "");
        try {
          ws.close();
        } catch {
          /* not open */
        }
      };
      return {
        send: (text) => ws.send(text),
        close() {
          detach();
          try {
            ws.close(1000);
          } catch {
            /* already closing */
          }
        },
      };
    },
  };
}

/** What the client needs of an EventSource: the browser's, or in Node
 * (which has none) the `eventsource` package's. */
export interface EventSourceLike {
  onopen: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  addEventListener(type: string, listener: (ev: any) => any): void;
  close(): void;
}

export type EventSourceConstructor = new (url: string, init?: { withCredentials?: boolean })
  => EventSourceLike;

export interface SseTransportOptions {
  /** the EventSource constructor (default: the global one) */
  EventSource?: EventSourceConstructor;
  /** send cookies to pg_ws on another origin (a token in
   * pg_ws.jwt_cookie) */
  withCredentials?: boolean;
  /** more event names to listen to (see sseTransport) */
  events?: readonly string[];
}

// the event document's eleven, named as pg_ws's events are
const DOCUMENT_EVENTS = ["client", "client_visit", "employee"]
  .flatMap((t) => ["create", "update", "delete"].map((op) => t + "_" + op))
  .concat("employee_attendance", "employee_attendance_delete");

/**
 * pg_ws's /events (Server-Sent Events) over an EventSource.
 *
 * An EventSource hands a named event only to listeners of that name, so
 * the connection listens to resync_required, unnamed messages, the
 * document's eleven events, options.events, and what the client asks
 * for (listen: each name of its ?events= and of its handlers; a prefix
 * "X_*" as X_create, X_update and X_delete, a table's row events).
 * Other names that reach the client only through a prefix or "*" must
 * be named in options.events.
 *
 * One EventSource is one connection: on its first error the transport
 * closes it (an EventSource would reconnect with the URL it was opened
 * with, its token and position of then) and reports the close, and the
 * client reopens with its position and a fresh token.  An EventSource
 * does not show the comment pg_ws ends a stream with (": close 1001
 * ..."): every close is reported as 1006, opened or not (a refusal, 401
 * included, is an error before open).
 */
export function sseTransport(options: SseTransportOptions = {}): Transport {
  return {
    path: "events",
    canSend: false,
    open(url, h) {
      const Ctor: EventSourceConstructor | undefined = options.EventSource
        || (globalThis as any).EventSource;
      if (!Ctor)
        throw new Error("pg-ws-client: no EventSource here: pass options.EventSource"
          + " (in Node, the eventsource package's)");
      const es = new Ctor(url.replace(/^ws/, "http"), { withCredentials: !!options.withCredentials });
      const names = new Set<string>();
      let opened = false;
      let done = false;
      const end = () => {
        done = true;
        es.onopen = es.onerror = null;
        es.close();
      };
      const listen = (name: string) => {
        if (name.endsWith("_*")) ["create", "update", "delete"].forEach((op) => listen(name.slice(0, -1) + op));
        if (name.includes("*") || names.has(name)) return;
        names.add(name);
        es.addEventListener(name, (e: { data: unknown }) => done || h.message(String(e.data)));
      };
      ["message", "resync_required", ...DOCUMENT_EVENTS, ...(options.events || [])].forEach(listen);
      es.onopen = () => {
        opened = true;
        h.open();
      };
      es.onerror = () => {
        end();
        h.close({ code: 1006, reason: "", opened });
      };
      return {
        send() {},      // never called: canSend is false
        close: end,
        listen,
      };
    },
  };
}
