/*
 * Transports: how the client reaches pg_ws.  A transport opens one
 * connection to a URL it is given (the client has put the position,
 * ?events=, ?filter= and the token in its query) and reports what
 * happens on it; it knows nothing of positions, tokens or reconnecting,
 * which are the client's.  The WebSocket transport (/ws/) is here.  A
 * Server-Sent Events transport (/events, EventSource) fits the same
 * seam: path "events", canSend false (the client then renews a token by
 * reconnecting at its position instead of sending the auth message).
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
