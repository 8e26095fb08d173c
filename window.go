package peerlink

import "time"

// Window sizing for long links. yamux gives every stream a fixed receive
// window, and a stream's throughput is capped at window ÷ RTT: 2.5 MiB/s
// at 100 ms with the default 256 KiB, whatever the link's bandwidth. So
// each session's window is sized from the RTT its handshake measured and
// Config.TargetBandwidth: twice the bandwidth-delay product, clamped to
// [256 KiB, MaxStreamWindow]. Twice, because yamux gives window back only
// once the reader has consumed half of it: with a window of one BDP the
// sender has between ½ and 1 BDP in flight, and gets about half the link
// (48 % measured, BenchmarkLongLink). A window is also what a stream can make
// this node buffer when the application does not read it, so the window
// times the streams a peer may have open is held within
// PeerMemoryBudget: a long link gets fewer, faster streams.
const (
	minStreamWindow = 256 << 10 // yamux's minimum (and default)
	windowAlign     = 64 << 10
)

// streamWindow returns the receive window for a link with the given
// round-trip time.
func streamWindow(rtt time.Duration, targetBandwidth int64, maxWindow uint32) uint32 {
	if targetBandwidth <= 0 || rtt <= 0 {
		return minStreamWindow
	}
	bdp := float64(targetBandwidth) * rtt.Seconds()
	w := uint64(2*bdp+windowAlign-1) / windowAlign * windowAlign
	return uint32(min(max(w, minStreamWindow), uint64(max(maxWindow, minStreamWindow))))
}
