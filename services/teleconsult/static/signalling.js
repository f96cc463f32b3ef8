// The signalling socket of one teleconsult room (DESIGN.md: welcome, offer, answer,
// candidate, chat, leave, admit, end; the server adds `from`).
//
// What a close means decides what follows (the codes of signalling/router.py):
// - 1001, 1006, 1011, 1012, 1013, 4001 (the server went away, the network dropped, a part
//   failed, we read too slowly, our place lapsed on a stalled replica) and a drop the page
//   asked for: reopen with a fresh join (a join token opens one socket, once, and is
//   short-lived), with a growing delay; the page then restarts ICE on its connections.
// - 4000: the same peer opened the room elsewhere (another tab): never reopen, or the two
//   would take the room from each other forever. Event `replaced`.
// - 1008: refused (entry, room full, flood): reopening would be refused again. Event
//   `refused` with the server's reason; `rejoin()` tries once more when the user asks.
// - after `ended` or our own `leave`, and any other code (1000, 1009): done. Event `closed`.
// A join the page's route refuses (403, 404, 409) is a refusal too; other failures of the
// join are retried like a drop.

const RETRY_MS = [500, 1000, 2000, 4000, 8000];
export const RECONNECT_CODES = new Set([1001, 1006, 1011, 1012, 1013, 4001]);
export const CLOSE_REPLACED = 4000;
export const CLOSE_POLICY = 1008;
const REFUSED_STATUSES = new Set([401, 403, 404, 409, 410]);

export class Signalling extends EventTarget {
  /** @param {() => Promise<{ws_url: string, token: string}>} join */
  constructor(join) {
    super();
    this.join = join;
    this.socket = null;
    this.closed = false;
    this.attempt = 0;
    this.opened = 0; // welcomes received
    this.sockets = 0; // sockets this page opened (read by the end-to-end test)
    this.timer = null; // the pending reconnection, if any
    this.dropping = null; // the socket the page itself dropped
  }

  async open() {
    const grant = await this.join();
    this.grant = grant;
    const url = new URL(grant.ws_url, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;
    if (!url.searchParams.has("token")) url.searchParams.set("token", grant.token);
    const socket = new WebSocket(url.toString());
    this.socket = socket;
    this.sockets += 1;
    socket.addEventListener("open", () => {
      this.attempt = 0;
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!message || typeof message.type !== "string") return;
      if (message.type === "welcome") {
        this.opened += 1;
        message.reconnected = this.opened > 1;
      }
      if (message.type === "ended" || message.type === "left") this.closed = true;
      this.dispatchEvent(new CustomEvent("message", { detail: message }));
    });
    socket.addEventListener("close", (event) => this.onClose(socket, event));
  }

  onClose(socket, { code, reason }) {
    // A socket we already replaced ourselves (a reconnection) closes with 4000: not news.
    if (this.socket !== socket || this.closed) return;
    const dropped = this.dropping === socket;
    this.dropping = null;
    if (dropped || RECONNECT_CODES.has(code)) {
      this.dispatchEvent(new CustomEvent("down", { detail: { code } }));
      this.reconnect();
      return;
    }
    this.closed = true;
    const detail = { code, reason: reason || "" };
    const kind = code === CLOSE_REPLACED ? "replaced" : code === CLOSE_POLICY ? "refused" : "closed";
    this.dispatchEvent(new CustomEvent(kind, { detail }));
  }

  reconnect() {
    const delay = RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
    this.attempt += 1;
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => {
      this.timer = null;
      if (this.closed) return;
      this.open().catch((error) => this.onJoinFailed(error));
    }, delay);
  }

  onJoinFailed(error) {
    if (this.closed) return;
    if (REFUSED_STATUSES.has(error && error.status)) {
      this.closed = true;
      this.dispatchEvent(new CustomEvent("refused", { detail: { code: error.status, reason: error.message || "" } }));
      return;
    }
    this.reconnect();
  }

  /** After a refusal, when the user asks: one fresh join (a new join token), then as usual. */
  async rejoin() {
    window.clearTimeout(this.timer);
    this.timer = null;
    this.closed = false;
    this.attempt = 0;
    try {
      await this.open();
    } catch (error) {
      this.closed = true;
      throw error;
    }
  }

  /** Drop the socket as a network failure would (used when the browser goes offline). */
  drop() {
    if (this.socket) {
      this.dropping = this.socket;
      this.socket.close();
    }
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  close() {
    this.closed = true;
    window.clearTimeout(this.timer);
    this.timer = null;
    this.send({ type: "leave" });
    if (this.socket) this.socket.close();
  }
}
