// One RTCPeerConnection per remote peer, negotiated over the signalling socket.
//
// The newcomer offers to the admitted peers it finds in `welcome` (or in
// `admitted`); the others answer. Candidates are trickled as the browser finds
// them and the peer's trickled candidates are added as they come; an aiortc
// peer sends none (its SDP carries them all), which needs nothing special.
// Only the side that started a connection offers on it, so offers do not collide;
// should they (a restart crossing an offer), W3C WebRTC's "perfect negotiation"
// applies: the polite side (the larger peer id) gives way. ICE is restarted
// (`restartIce()`, W3C WebRTC §4.4.1.6) by the offering side when a connection
// fails or stays disconnected, and by the peer whose signalling socket came back.

const DISCONNECTED_GRACE_MS = 2500;
const LOW_BANDWIDTH_VIDEO_BPS = 150_000;

function fingerprint(sdp) {
  const line = String(sdp || "").split(/\r?\n/).find((l) => l.startsWith("a=fingerprint:"));
  return line || "";
}

export class Call extends EventTarget {
  constructor({ signalling, iceServers, localStream, lowBandwidth = false }) {
    super();
    this.lowBandwidth = lowBandwidth;
    this.signalling = signalling;
    this.iceServers = iceServers || [];
    this.localStream = localStream;
    this.me = null;
    this.peers = new Map(); // peer id -> { pc, channel, makingOffer, polite, info, timer }
  }

  info(peerId) {
    const peer = this.peers.get(peerId);
    return peer ? peer.info : {};
  }

  connection(peerId, info = {}) {
    let peer = this.peers.get(peerId);
    if (peer) {
      peer.info = { ...peer.info, ...info };
      return peer;
    }
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    peer = { pc, channel: null, makingOffer: false, polite: String(this.me) > String(peerId), info, timer: null };
    this.peers.set(peerId, peer);
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) pc.addTrack(track, this.localStream);
    }
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.signalling.send({ type: "candidate", to: peerId, candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ track, streams }) => {
      const stream = streams[0] || new MediaStream([track]);
      this.dispatchEvent(new CustomEvent("track", { detail: { peerId, stream, track } }));
    };
    pc.ondatachannel = ({ channel }) => this.useChannel(peerId, channel);
    // Only the peer that started the connection offers (the room's rule: no glare); an
    // answerer with a track the offer had no place for keeps it to itself.
    pc.onnegotiationneeded = () => {
      if (this.peers.get(peerId)?.initiator) this.offer(peerId);
    };
    pc.oniceconnectionstatechange = () => this.watchIce(peerId);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected" && this.lowBandwidth) this.capVideo(pc);
      this.dispatchEvent(new CustomEvent("state", { detail: { peerId, state: pc.connectionState } }));
    };
    return peer;
  }

  /** Low-bandwidth mode: video senders at most LOW_BANDWIDTH_VIDEO_BPS (RTCRtpSender.setParameters). */
  async capVideo(pc) {
    for (const sender of pc.getSenders()) {
      if (!sender.track || sender.track.kind !== "video") continue;
      const parameters = sender.getParameters();
      if (!parameters.encodings || !parameters.encodings.length) continue;
      for (const encoding of parameters.encodings) encoding.maxBitrate = LOW_BANDWIDTH_VIDEO_BPS;
      try {
        await sender.setParameters(parameters);
      } catch (error) {
        console.warn("bitrate cap refused", error);
      }
    }
  }

  useChannel(peerId, channel) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    peer.channel = channel;
    channel.onmessage = ({ data }) => {
      this.dispatchEvent(new CustomEvent("chat", { detail: { peerId, text: String(data) } }));
    };
    channel.onopen = () => this.dispatchEvent(new CustomEvent("channel", { detail: { peerId } }));
  }

  /** Start a connection to `peerId` as the offerer: tracks and the chat channel trigger the offer. */
  call(peerId, info) {
    const existing = this.peers.get(peerId);
    if (existing) {
      existing.info = { ...existing.info, ...info };
      return;
    }
    const peer = this.connection(peerId, info);
    peer.initiator = true;
    this.useChannel(peerId, peer.pc.createDataChannel("chat"));
  }

  async offer(peerId, { iceRestart = false } = {}) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    try {
      peer.makingOffer = true;
      if (iceRestart) peer.pc.restartIce();
      await peer.pc.setLocalDescription();
      this.signalling.send({ type: "offer", to: peerId, sdp: peer.pc.localDescription.sdp });
    } catch (error) {
      console.warn("offer failed", error);
    } finally {
      peer.makingOffer = false;
    }
  }

  /** The peer came back on a new socket: its next offer may be for a brand-new connection. */
  expectRestart(peerId) {
    const peer = this.peers.get(peerId);
    if (peer) peer.restarting = true;
  }

  async onOffer(peerId, sdp, info) {
    const known = this.peers.get(peerId);
    const remote = known && known.pc.remoteDescription;
    if (known && known.restarting && remote && fingerprint(remote.sdp) !== fingerprint(sdp)) {
      // A new DTLS identity: the peer built a new connection (aiortc cannot restart ICE).
      this.drop(peerId);
    }
    const peer = this.connection(peerId, info);
    peer.restarting = false;
    const pc = peer.pc;
    const collision = peer.makingOffer || pc.signalingState !== "stable";
    if (collision && !peer.polite) return; // ours wins; theirs is ignored
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription();
    this.signalling.send({ type: "answer", to: peerId, sdp: pc.localDescription.sdp });
  }

  async onAnswer(peerId, sdp) {
    const peer = this.peers.get(peerId);
    if (!peer || peer.pc.signalingState !== "have-local-offer") return;
    await peer.pc.setRemoteDescription({ type: "answer", sdp });
  }

  async onCandidate(peerId, candidate) {
    const peer = this.peers.get(peerId);
    if (!peer || !candidate) return;
    const init = typeof candidate === "string" ? { candidate, sdpMLineIndex: 0 } : candidate;
    try {
      await peer.pc.addIceCandidate(init);
    } catch (error) {
      console.warn("candidate refused", error);
    }
  }

  watchIce(peerId) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    const state = peer.pc.iceConnectionState;
    this.dispatchEvent(new CustomEvent("ice", { detail: { peerId, state } }));
    window.clearTimeout(peer.timer);
    if (!peer.initiator) return; // the side that offered restarts; the other answers
    if (state === "failed") {
      this.restart(peerId);
    } else if (state === "disconnected") {
      peer.timer = window.setTimeout(() => {
        if (peer.pc.iceConnectionState === "disconnected") this.restart(peerId);
      }, DISCONNECTED_GRACE_MS);
    }
  }

  restart(peerId) {
    const peer = this.peers.get(peerId);
    if (!peer || peer.pc.connectionState === "closed") return;
    this.dispatchEvent(new CustomEvent("restart", { detail: { peerId } }));
    this.offer(peerId, { iceRestart: true });
  }

  restartAll() {
    for (const peerId of this.peers.keys()) this.restart(peerId);
  }

  drop(peerId) {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    window.clearTimeout(peer.timer);
    peer.pc.close();
    this.peers.delete(peerId);
    this.dispatchEvent(new CustomEvent("gone", { detail: { peerId } }));
  }

  /** Send `text` on every open chat channel; false when none is open. */
  chat(text) {
    let sent = false;
    for (const peer of this.peers.values()) {
      if (peer.channel && peer.channel.readyState === "open") {
        peer.channel.send(text);
        sent = true;
      }
    }
    return sent;
  }

  close() {
    for (const peerId of [...this.peers.keys()]) this.drop(peerId);
  }
}
