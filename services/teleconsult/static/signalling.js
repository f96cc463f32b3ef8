// The signalling socket of one teleconsult room (DESIGN.md: welcome, offer, answer,
// candidate, chat, leave, admit, end; the server adds `from`).
//
// A socket that closes without `leave` or `ended` is reopened with a fresh join
// (the join token is checked once, at connect, and is short-lived), with a
// growing delay; the page then restarts ICE on its connections.

const RETRY_MS = [500, 1000, 2000, 4000, 8000];

export class Signalling extends EventTarget {
  /** @param {() => Promise<{ws_url: string, token: string}>} join */
  constructor(join) {
    super();
    this.join = join;
    this.socket = null;
    this.closed = false;
    this.attempt = 0;
    this.opened = 0;
  }

  async open() {
    const grant = await this.join();
    this.grant = grant;
    const url = new URL(grant.ws_url, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;
    if (!url.searchParams.has("token")) url.searchParams.set("token", grant.token);
    const socket = new WebSocket(url.toString());
    this.socket = socket;
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
      if (message.type === "ended") this.closed = true;
      this.dispatchEvent(new CustomEvent("message", { detail: message }));
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket || this.closed) return;
      this.dispatchEvent(new CustomEvent("down"));
      this.reconnect();
    });
  }

  reconnect() {
    const delay = RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
    this.attempt += 1;
    window.setTimeout(() => {
      if (this.closed) return;
      this.open().catch(() => this.reconnect());
    }, delay);
  }

  /** Drop the socket as a network failure would (used when the browser goes offline). */
  drop() {
    if (this.socket) this.socket.close();
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
    this.send({ type: "leave" });
    if (this.socket) this.socket.close();
  }
}
