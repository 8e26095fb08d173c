package mux

import (
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/rs/zerolog"
)

// Config tunes a Session. The zero value of each field selects its
// default, except EnableKeepAlive, which DefaultConfig turns on.
type Config struct {
	// MaxStreams bounds the streams open at once on the session, both
	// directions together; 0 means unlimited. OpenStream past it fails
	// with ErrStreamLimit; an inbound stream past it is reset with code 2
	// before any goroutine is started for it.
	MaxStreams int

	// HeaderTimeout is how long the accepting side waits for a stream's
	// header before resetting the stream with code 3. 0 means 10s.
	HeaderTimeout time.Duration

	// AcceptBacklog is yamux's AcceptBacklog: inbound streams not yet
	// taken by the accept loop, and outbound opens not yet acknowledged.
	// 0 means 256.
	AcceptBacklog int

	// EnableKeepAlive makes yamux ping every KeepAliveInterval; a ping
	// unanswered within ConnectionWriteTimeout ends the session with
	// ErrKeepAliveTimeout.
	EnableKeepAlive bool
	// KeepAliveInterval: 0 means 30s.
	KeepAliveInterval time.Duration

	// ConnectionWriteTimeout is yamux's bound on queueing a frame for the
	// link (and on a ping's answer). 0 means 10s.
	ConnectionWriteTimeout time.Duration

	// StreamCloseTimeout is how long yamux keeps a stream that this side
	// has closed while it waits for the remote's close. A stream this side
	// resets or refuses (codes 1..4) is closed locally right after its RST
	// and the remote, having dropped the stream, never answers, so such a
	// stream's state (and up to StreamWindow of data that was in flight)
	// is held until this fires; yamux's default of 5 minutes would let a
	// stream flood pile it up. 0 means 30s.
	StreamCloseTimeout time.Duration

	// StreamOpenTimeout is yamux's bound on the remote acknowledging a
	// stream we opened; when it passes, yamux closes the whole session.
	// Each pending open holds a goroutine until acknowledged. 0 means 75s
	// (yamux's default); negative disables it.
	StreamOpenTimeout time.Duration

	// StreamWindow is yamux's MaxStreamWindowSize: the receive window of
	// each stream, which bounds its throughput to StreamWindow/RTT. 0
	// means 256 KiB, the minimum.
	StreamWindow uint32

	// Logger receives yamux's log lines and the session's own, with
	// component=yamux|mux and peer=<remote short ID>. The zero value
	// logs nothing.
	Logger zerolog.Logger
}

// Defaults applied to zero Config fields.
const (
	DefaultHeaderTimeout          = 10 * time.Second
	DefaultAcceptBacklog          = 256
	DefaultKeepAliveInterval      = 30 * time.Second
	DefaultConnectionWriteTimeout = 10 * time.Second
	DefaultStreamCloseTimeout     = 30 * time.Second
	DefaultStreamOpenTimeout      = 75 * time.Second
	DefaultStreamWindow           = 256 << 10
)

// DefaultConfig returns the defaults, with keepalive on and logging off.
func DefaultConfig() Config {
	return Config{
		HeaderTimeout:          DefaultHeaderTimeout,
		AcceptBacklog:          DefaultAcceptBacklog,
		EnableKeepAlive:        true,
		KeepAliveInterval:      DefaultKeepAliveInterval,
		ConnectionWriteTimeout: DefaultConnectionWriteTimeout,
		StreamCloseTimeout:     DefaultStreamCloseTimeout,
		StreamOpenTimeout:      DefaultStreamOpenTimeout,
		StreamWindow:           DefaultStreamWindow,
		Logger:                 zerolog.Nop(),
	}
}

// normalize validates c, naming the bad field, and fills in defaults.
func (c Config) normalize() (Config, error) {
	bad := func(field string, v any, want string) (Config, error) {
		return c, fmt.Errorf("mux: invalid Config.%s %v: %s", field, v, want)
	}
	switch {
	case c.MaxStreams < 0:
		return bad("MaxStreams", c.MaxStreams, "must be >= 0 (0 = unlimited)")
	case c.HeaderTimeout < 0:
		return bad("HeaderTimeout", c.HeaderTimeout, "must be >= 0")
	case c.AcceptBacklog < 0:
		return bad("AcceptBacklog", c.AcceptBacklog, "must be >= 0")
	case c.KeepAliveInterval < 0:
		return bad("KeepAliveInterval", c.KeepAliveInterval, "must be >= 0")
	case c.ConnectionWriteTimeout < 0:
		return bad("ConnectionWriteTimeout", c.ConnectionWriteTimeout, "must be >= 0")
	case c.StreamCloseTimeout < 0:
		return bad("StreamCloseTimeout", c.StreamCloseTimeout, "must be >= 0")
	case c.StreamWindow != 0 && c.StreamWindow < DefaultStreamWindow:
		return bad("StreamWindow", c.StreamWindow, fmt.Sprintf("must be 0 or >= %d (yamux's minimum)", DefaultStreamWindow))
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = DefaultHeaderTimeout
	}
	if c.AcceptBacklog == 0 {
		c.AcceptBacklog = DefaultAcceptBacklog
	}
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if c.ConnectionWriteTimeout == 0 {
		c.ConnectionWriteTimeout = DefaultConnectionWriteTimeout
	}
	if c.StreamCloseTimeout == 0 {
		c.StreamCloseTimeout = DefaultStreamCloseTimeout
	}
	switch {
	case c.StreamOpenTimeout == 0:
		c.StreamOpenTimeout = DefaultStreamOpenTimeout
	case c.StreamOpenTimeout < 0:
		c.StreamOpenTimeout = 0 // yamux: 0 disables
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	return c, nil
}

// yamuxConfig returns the yamux configuration for a normalized c.
func (c Config) yamuxConfig(l yamux.Logger) *yamux.Config {
	return &yamux.Config{
		AcceptBacklog:          c.AcceptBacklog,
		EnableKeepAlive:        c.EnableKeepAlive,
		KeepAliveInterval:      c.KeepAliveInterval,
		ConnectionWriteTimeout: c.ConnectionWriteTimeout,
		MaxStreamWindowSize:    c.StreamWindow,
		StreamOpenTimeout:      c.StreamOpenTimeout,
		StreamCloseTimeout:     c.StreamCloseTimeout,
		Logger:                 l,
		LogOutput:              nil, // never yamux's default, os.Stderr
	}
}

var _ io.ReadWriteCloser = (*frameConn)(nil)
