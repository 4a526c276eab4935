// The live stream (GET /v1/stream, Server-Sent Events). Each change carries the EVENTS stream
// sequence as its SSE id. EventSource resends it as Last-Event-ID when it reconnects by
// itself; when we have to open a new EventSource (the access token was refreshed, or the
// server refused the old one), we pass the last id as ?last_event_id= so nothing is missed.
import { accessToken } from "./api.js";

export class LiveStream {
  constructor({ onHello, onChanges, onReset, onState }) {
    this.onHello = onHello;
    this.onChanges = onChanges;
    this.onReset = onReset;
    this.onState = onState;
    this.lastId = null;
    this.source = null;
    this.buffer = [];
    this.flushTimer = null;
    this.retryTimer = null;
  }

  start() {
    this.stop();
    const q = new URLSearchParams();
    const token = accessToken();
    if (token) q.set("access_token", token);
    if (this.lastId !== null) q.set("last_event_id", String(this.lastId));
    const source = new EventSource(`/v1/stream?${q}`);
    this.source = source;
    this.onState("connecting");
    source.onopen = () => this.onState("on");
    source.addEventListener("hello", (e) => {
      this.lastId = Number(e.lastEventId);
      this.onState("on", this.lastId);
      this.onHello(this.lastId);
    });
    source.addEventListener("reset", (e) => {
      this.lastId = Number(e.lastEventId);
      this.onReset(this.lastId);
    });
    source.addEventListener("change", (e) => {
      this.lastId = Number(e.lastEventId);
      this.buffer.push(JSON.parse(e.data));
      // Changes arrive in bursts (a storm of reports): hand them over in batches.
      if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), 120);
    });
    source.onerror = () => {
      this.onState("off", this.lastId);
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. 401 after the token expired): reopen with a fresh
        // token, resuming after the last id we saw.
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.start(), 2000);
      }
    };
  }

  flush() {
    this.flushTimer = null;
    const batch = this.buffer;
    this.buffer = [];
    if (batch.length) this.onChanges(batch, this.lastId);
  }

  stop() {
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
  }
}
