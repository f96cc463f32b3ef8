// getStats summaries (W3C webrtc-stats): round-trip time, packet loss and bitrate per
// kind and direction, one per remote peer, posted every few seconds for the session's
// quality report (the shape of the API's StatsSample).

export const STATS_INTERVAL_MS = 5000;

function counters(report) {
  const c = { rtt: null, received: 0, lost: 0, framesDecoded: 0, bytes: {} };
  const add = (key, value) => {
    c.bytes[key] = (c.bytes[key] || 0) + (value || 0);
  };
  report.forEach((s) => {
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
      if (typeof s.currentRoundTripTime === "number") c.rtt = s.currentRoundTripTime;
    } else if (s.type === "inbound-rtp") {
      c.received += s.packetsReceived || 0;
      c.lost += Math.max(0, s.packetsLost || 0);
      add(`${s.kind}_in`, s.bytesReceived);
      if (s.kind === "video") c.framesDecoded += s.framesDecoded || 0;
    } else if (s.type === "outbound-rtp") {
      add(`${s.kind}_out`, s.bytesSent);
    }
  });
  if (c.rtt === null) {
    report.forEach((s) => {
      if (s.type === "remote-inbound-rtp" && typeof s.roundTripTime === "number") c.rtt = s.roundTripTime;
    });
  }
  c.at = performance.now();
  return c;
}

/** The summary of `pc` since `previous` (the counters returned by the last call, or null). */
export async function summarise(pc, previous) {
  const now = counters(await pc.getStats());
  const seconds = previous ? (now.at - previous.at) / 1000 : 0;
  const kbps = (key) => {
    if (!previous || seconds <= 0) return null;
    const delta = (now.bytes[key] || 0) - (previous.bytes[key] || 0);
    return Math.round((Math.max(0, delta) * 8) / seconds / 100) / 10;
  };
  const received = now.received - (previous ? previous.received : 0);
  const lost = now.lost - (previous ? previous.lost : 0);
  const total = Math.max(0, received) + Math.max(0, lost);
  return {
    counters: now,
    framesDecoded: now.framesDecoded,
    sample: {
      measured_at: new Date().toISOString(),
      rtt_ms: now.rtt === null ? null : Math.round(now.rtt * 10000) / 10,
      packet_loss_pct: total > 0 ? Math.round((Math.max(0, lost) / total) * 10000) / 100 : 0,
      audio_in_kbps: kbps("audio_in"),
      audio_out_kbps: kbps("audio_out"),
      video_in_kbps: kbps("video_in"),
      video_out_kbps: kbps("video_out"),
    },
  };
}
