"""WebRTC signalling for teleconsult rooms: the protocol, the room rules, the bus, the socket."""
