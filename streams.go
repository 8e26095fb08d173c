package peerlink

import (
	"context"
	"errors"
	"fmt"

	"github.com/peerlink/peerlink/mux"
	"github.com/peerlink/peerlink/peer"
)

// SetStreamHandler registers h for inbound streams of protocol, replacing
// any handler already registered for it. h runs in its own goroutine and
// owns the stream, which is closed when h returns. The stream's Context
// is cancelled when its link closes, so h can stop work that is not
// stream I/O. A panic in h is recovered: the stream is reset, the panic
// and its stack are logged and counted (HandlerPanics), and the node
// keeps serving, as net/http does.
func (m *ConnectionManager) SetStreamHandler(protocol string, h mux.Handler) error {
	if err := mux.ValidateProtocol(protocol); err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("peerlink: nil handler for protocol %q", protocol)
	}
	m.handlers.Store(protocol, m.noteHandlerUse(h))
	return nil
}

// RemoveStreamHandler unregisters protocol's handler; later streams of that
// protocol are reset with mux.ErrProtocolNotSupported.
func (m *ConnectionManager) RemoveStreamHandler(protocol string) {
	m.handlers.Delete(protocol)
}

func (m *ConnectionManager) route(protocol string) mux.Handler {
	if h, ok := m.handlers.Load(protocol); ok {
		return h.(mux.Handler)
	}
	return nil
}

// HandlerPanics returns how many stream handlers have panicked.
func (m *ConnectionManager) HandlerPanics() uint64 { return m.panics.Load() }

// OpenStream opens a stream of protocol to id at priority prio, connecting
// first if there is no link (and joining a dial already in flight), unless
// ctx carries WithNoDial. The stream's header travels with its first
// write, so opening costs no round trip.
//
// It fails with ErrShuttingDown once Shutdown has begun, and with an
// error wrapping ErrGoAway when the peer has said it is going away.
func (m *ConnectionManager) OpenStream(ctx context.Context, id peer.ID, protocol string, prio mux.Priority) (*mux.Stream, error) {
	if err := m.usable(); err != nil {
		return nil, err
	}
	if err := mux.ValidateProtocol(protocol); err != nil {
		return nil, err
	}
	if !prio.Valid() {
		return nil, fmt.Errorf("%w: %d", mux.ErrInvalidPriority, prio)
	}
	if id == m.id {
		return nil, ErrDialSelf
	}
	dial := !noDial(ctx)
	for attempt := 0; ; attempt++ {
		l, err := m.connectLocked(ctx, m.lockRecord(id), dial)
		if err != nil {
			return nil, err
		}
		s, err := l.sess.OpenStream(ctx, protocol, prio)
		if err != nil && errors.Is(err, mux.ErrSessionClosed) && attempt == 0 {
			continue // the link died under us; connect once more
		}
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
			!errors.Is(err, mux.ErrStreamLimit) && !errors.Is(err, mux.ErrGoAway) {
			l.health.RecordError()
		}
		if err == nil {
			m.noteUse(l)
		}
		return s, err
	}
}
