package peerlink

import (
	"fmt"
	"math"
	"runtime/debug"
	"time"

	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/trim"
)

// ConnectionLimits are the node's connection limits: the hard ones, which
// refuse links, and the watermarks, which trim them. Config sets them
// (MaxConnections, MaxInboundConnections, Trim); SetConnectionLimits
// changes them while the node runs, and ConnectionLimits reads them.
//
// MaxConnections never exceeds what the process can hold (the adaptive
// default): New and SetConnectionLimits lower it, and the watermarks and
// MaxInboundConnections above it, and log why. The caps are
//
//   - open files, for transports with sockets: the soft RLIMIT_NOFILE n
//     less 64 (the runtime, listeners, log files), MaxPendingHandshakes
//     (sockets in handshake) and n/10 (the application's files). Go
//     raises the soft limit to the hard one at start on Linux, so n is
//     usually the hard limit: 1024 allows 794 links, 65536 allows 58,855;
//   - memory: the memory budget over LinkMemory, the budget being
//     NodeMemoryBudget, or half of GOMEMLIMIT if that is smaller, so
//     that the links' own state takes at most what their streams may
//     (1 GiB allows 21,845 links).
//
// Neither cap goes below 8 links.
type ConnectionLimits struct {
	// MaxConnections bounds the open links, both directions (0:
	// unlimited); MaxInboundConnections those the remote dialed (0:
	// unlimited). Past them a dial fails with ErrConnectionLimit and an
	// inbound link is refused with ErrConnectionLimit or ErrInboundLimit.
	MaxConnections        int
	MaxInboundConnections int
	// Trim sets the watermarks and the trim rules; its zero fields take
	// the defaults (the watermarks from MaxConnections).
	Trim TrimConfig
}

// LinkMemory is what one open link costs the node besides its streams'
// buffers (which NodeMemoryBudget counts): TLS and yamux state, buffers
// and goroutine stacks. BenchmarkLinkMemory measures 40–47 KiB for an
// idle link's end over TCP and TLS (Go 1.26, amd64); this is that,
// rounded up.
const LinkMemory = 48 << 10

func (cfg Config) connectionLimits() ConnectionLimits {
	return ConnectionLimits{
		MaxConnections: cfg.MaxConnections, MaxInboundConnections: cfg.MaxInboundConnections, Trim: cfg.Trim,
	}
}

// resolve checks l, naming the first bad field in an error wrapping
// ErrInvalidConfig, and returns it with the defaults filled in: zero
// fields take their defaults, and negative watermarks, durations and
// floors become -1 (off).
func (l ConnectionLimits) resolve() (ConnectionLimits, error) {
	bad := func(field, format string, args ...any) (ConnectionLimits, error) {
		return l, fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	t := &l.Trim
	switch {
	case l.MaxConnections < 0:
		return bad("MaxConnections", "is %d; want 0 (unlimited) or more", l.MaxConnections)
	case l.MaxInboundConnections < 0:
		return bad("MaxInboundConnections", "is %d; want 0 (unlimited) or more", l.MaxInboundConnections)
	case l.MaxConnections > 0 && l.MaxInboundConnections > l.MaxConnections:
		return bad("MaxInboundConnections", "is %d, more than MaxConnections (%d)", l.MaxInboundConnections, l.MaxConnections)
	case t.LowWater < 0:
		return bad("Trim.LowWater", "is %d; want 1 or more, or 0 for the default", t.LowWater)
	}
	if t.HighWater == 0 {
		t.HighWater = -1
		if l.MaxConnections >= 4 {
			t.HighWater = l.MaxConnections / 2
		}
	}
	if t.HighWater > 0 {
		if l.MaxConnections > 0 && t.HighWater > l.MaxConnections {
			return bad("Trim.HighWater", "is %d, more than MaxConnections (%d)", t.HighWater, l.MaxConnections)
		}
		if t.LowWater == 0 {
			if t.LowWater = t.HighWater * 4 / 5; t.LowWater == 0 {
				return bad("Trim.HighWater", "is %d; want 2 or more, so that LowWater fits below it", t.HighWater)
			}
		}
		if t.LowWater >= t.HighWater {
			return bad("Trim.LowWater", "is %d, not below Trim.HighWater (%d)", t.LowWater, t.HighWater)
		}
	}
	t.HighWater = max(t.HighWater, -1)
	t.GracePeriod = offOr(t.GracePeriod, DefaultGracePeriod)
	t.SilencePeriod = offOr(t.SilencePeriod, DefaultSilencePeriod)
	t.MinOutbound = offOr(t.MinOutbound, DefaultMinOutbound)
	t.MaxPerSubnet = offOr(t.MaxPerSubnet, DefaultMaxPerSubnet)
	return l, nil
}

// offOr returns def for 0, -1 (off) for a negative v, and v otherwise.
func offOr[T int | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return -1
	}
	return v
}

// watermarks returns the trim trigger of l, which must be resolved.
func (l *ConnectionLimits) watermarks() trim.Watermarks {
	return trim.Watermarks{High: l.Trim.HighWater, Low: l.Trim.LowWater, Silence: max(l.Trim.SilencePeriod, 0)}
}

// overHard reports whether n links, in of them inbound, exceed the hard
// limits (after SetConnectionLimits lowered them).
func (l *ConnectionLimits) overHard(n, in int) bool {
	return (l.MaxConnections > 0 && n > l.MaxConnections) || (l.MaxInboundConnections > 0 && in > l.MaxInboundConnections)
}

// trimPolicy returns the victim rule of a trim: down to the low water mark
// if toLow, and in any case to the hard limits.
func (l *ConnectionLimits) trimPolicy(toLow bool) trim.Policy {
	t := &l.Trim
	p := trim.Policy{
		Target: -1, MaxInbound: l.MaxInboundConnections, MinOutbound: max(t.MinOutbound, 0),
		MaxPerGroup: max(t.MaxPerSubnet, 0), GracePeriod: max(t.GracePeriod, 0),
	}
	if toLow && t.HighWater > 0 {
		p.Target = t.LowWater
	}
	if l.MaxConnections > 0 && (p.Target < 0 || p.Target > l.MaxConnections) {
		p.Target = l.MaxConnections
	}
	if p.Target >= 0 {
		// The floor keeps outbound links below the watermarks, not above
		// what the node may hold.
		p.MinOutbound = min(p.MinOutbound, p.Target)
	}
	return p
}

// limits returns the limits in force. New sets them before anything
// reads them; SetConnectionLimits replaces them whole.
func (m *ConnectionManager) limits() *ConnectionLimits { return m.trim.limits.Load() }

// ConnectionLimits returns the limits in force, with the defaults filled
// in and any cap from the process's resources applied (see
// SetConnectionLimits): a watermark, period or floor that is off reads -1.
func (m *ConnectionManager) ConnectionLimits() ConnectionLimits { return *m.limits() }

// SetConnectionLimits replaces the node's connection limits (seed 002's
// set_connection_limits) and returns at once. Zero fields take the
// defaults, as in Config; an invalid value is refused with an error
// wrapping ErrInvalidConfig that names the field, and nothing changes.
//
// The new limits apply to every link admitted from then on. Links that
// fit stay: raising the limits only lets more links in. When the open
// links exceed the new high water mark, a trim down to the new low water
// mark starts at once (without waiting for the silence period), by the
// same rule as every trim; when they exceed the new hard limits, the
// lowest-ranked links are closed down to them (protected and persistent
// peers and links in their grace period excepted). The trim runs in the
// manager's own goroutine; its closes are published as EventDisconnected
// with ReasonTrimmed.
//
// The process's resources cap MaxConnections as they do in New (see
// ConnectionLimits): a limit above what the process can hold is lowered
// to it, and the reason logged.
func (m *ConnectionManager) SetConnectionLimits(l ConnectionLimits) error {
	if err := m.usable(); err != nil {
		return err
	}
	if _, err := l.resolve(); err != nil {
		return err
	}
	m.trim.limits.Store(m.capLimits(l))
	m.trim.forced.Store(true)
	m.kickTrim()
	return nil
}

// initLimits sets the limits in force from the config, capped by what the
// process can hold, and the trimmer's channels. New calls it before it
// listens.
func (m *ConnectionManager) initLimits() {
	m.trim.kick = make(chan struct{}, 1)
	m.trim.run = make(chan struct{}, 1)
	_, inMemory := m.tr.(*transport.Memory)
	m.trim.caps = processCaps(m.cfg, !inMemory)
	m.trim.limits.Store(m.capLimits(m.cfg.connectionLimits()))
}

// capLimits applies the process's caps to l, valid as given, logs the
// reason if they lower it, and returns it resolved.
func (m *ConnectionManager) capLimits(l ConnectionLimits) *ConnectionLimits {
	capped, lowered := m.trim.caps.apply(l)
	r, err := capped.resolve()
	if err != nil {
		// Explicit watermarks the cap left inconsistent: derive them from
		// the capped limit instead.
		capped.Trim.HighWater, capped.Trim.LowWater = 0, 0
		r, _ = capped.resolve()
	}
	if lowered {
		m.log.Info().Int("max_connections", r.MaxConnections).Int("configured", l.MaxConnections).
			Str("reason", m.trim.caps.reason).Msg("connection limit capped to what the process can hold")
	}
	return &r
}

// limitCaps is the most links the process can hold, and why; links 0:
// no cap.
type limitCaps struct {
	links  int
	reason string
}

// fdReserve is the file descriptors kept for the runtime, listeners and
// log files, besides MaxPendingHandshakes and a tenth of the limit.
const fdReserve = 64

// minCap is the least a cap leaves: below it a node is of no use anyway.
const minCap = 8

// processCaps computes the caps on MaxConnections described at
// ConnectionLimits.
func processCaps(cfg Config, sockets bool) limitCaps {
	var c limitCaps
	if n, ok := openFileLimit(); ok && sockets {
		reserve := fdReserve + uint64(max(cfg.MaxPendingHandshakes, 0)) + n/10
		links := minCap
		if n > reserve+minCap {
			links = int(min(n-reserve, math.MaxInt32))
		}
		c = limitCaps{links: links, reason: fmt.Sprintf("open-file limit %d: %d links, %d descriptors kept for listeners, handshakes and files", n, links, reserve)}
	}
	budget, from := cfg.NodeMemoryBudget, "NodeMemoryBudget"
	if lim := debug.SetMemoryLimit(-1); lim < math.MaxInt64 && (budget <= 0 || lim/2 < budget) {
		budget, from = lim/2, "half of GOMEMLIMIT"
	}
	if budget > 0 {
		links := int(max(min(budget/LinkMemory, math.MaxInt32), minCap))
		if c.links == 0 || links < c.links {
			c = limitCaps{links: links, reason: fmt.Sprintf("memory budget %d bytes (%s) at %d bytes per link: %d links", budget, from, LinkMemory, links)}
		}
	}
	return c
}

// apply lowers l's hard limits (and watermarks above them) to the cap,
// and reports whether it lowered anything.
func (c limitCaps) apply(l ConnectionLimits) (ConnectionLimits, bool) {
	if c.links <= 0 || (l.MaxConnections > 0 && l.MaxConnections <= c.links) {
		return l, false
	}
	if l.MaxConnections == 0 && l.Trim.HighWater == 0 {
		l.Trim.HighWater = -1 // asked for no limit: a cap, but no watermarks derived from it
	}
	l.MaxConnections = c.links
	l.MaxInboundConnections = min(l.MaxInboundConnections, c.links)
	if l.Trim.HighWater > c.links {
		l.Trim.HighWater = c.links
	}
	return l, true
}
