"""The consented recorder's parts: an aiortc room peer, its media capture, the spawning task."""
