package peerlink

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/transport"
)

// pendingAdmissions are inbound links admitted by the gater whose dialer
// has been told so but that the accept loop has not registered yet. The
// limits count them, or two dialers admitted a moment apart would both
// pass a check that only one of them fits. A link whose handshake fails
// after admission never registers, so each admission expires after the
// handshake timeout: otherwise a peer resetting right after its admission
// could leave phantom admissions behind until the limit refused everyone.
type pendingAdmissions struct {
	mu  sync.Mutex
	at  map[peer.ID]time.Time
	ttl time.Duration
}

func newPendingAdmissions(ttl time.Duration) *pendingAdmissions {
	return &pendingAdmissions{at: make(map[peer.ID]time.Time), ttl: ttl}
}

// admit records id's admission at now unless refuse, given the number
// of admissions still pending (expired ones dropped), returns an error.
// Checking and recording under one lock keeps two admissions a moment
// apart from both fitting where only one does.
func (p *pendingAdmissions) admit(id peer.ID, now time.Time, refuse func(pending int64) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for other, t := range p.at {
		if now.Sub(t) >= p.ttl {
			delete(p.at, other)
		}
	}
	if err := refuse(int64(len(p.at))); err != nil {
		return err
	}
	p.at[id] = now
	return nil
}

// done marks id's admitted link as arrived (registered or not).
func (p *pendingAdmissions) done(id peer.ID) {
	p.mu.Lock()
	delete(p.at, id)
	p.mu.Unlock()
}

// admission is the gater the manager gives its transport: the user's gater
// first, then the manager's own rules for inbound links.
type admission struct {
	m    *ConnectionManager
	user transport.Gater
}

var errSimultaneousDial = errors.New("peerlink: simultaneous dial: keeping the link dialed by the smaller ID")

func (a *admission) InterceptDial(id peer.ID, addr string) error {
	if a.user != nil {
		return a.user.InterceptDial(id, addr)
	}
	return nil
}

func (a *admission) InterceptAccept(remote net.Addr) error {
	if err := a.m.usable(); err != nil {
		return transport.Refuse(transport.RefusalClosing, err)
	}
	if a.user != nil {
		return a.user.InterceptAccept(remote)
	}
	return nil
}

// InterceptSecured runs once a link's peer is authenticated. For our own
// dials it marks the dial as having reached the peer, from when on it
// counts in the tie-break; for inbound links it applies the tie-break and
// the limits.
func (a *admission) InterceptSecured(dir transport.Direction, id peer.ID, remote net.Addr) error {
	if a.user != nil {
		if err := a.user.InterceptSecured(dir, id, remote); err != nil {
			return err
		}
	}
	m := a.m
	if dir != transport.Inbound {
		if r, ok := m.peers.Get(id); ok {
			r.mu.Lock()
			if r.dial != nil {
				r.dial.secured = true
			}
			r.mu.Unlock()
		}
		return nil
	}
	if err := m.usable(); err != nil {
		return transport.Refuse(transport.RefusalClosing, err)
	}
	if id == m.id {
		return transport.Refuse(transport.RefusalOther, ErrDialSelf)
	}
	r := m.lockRecord(id)
	defer r.mu.Unlock()
	weWin := m.id.Less(id)
	replacing := false
	switch l := m.currentLink(r); {
	case l != nil:
		if l.dir() == transport.Outbound && weWin {
			return transport.Refuse(transport.RefusalDuplicate, errSimultaneousDial)
		}
		replacing = true
	case r.dial != nil && r.dial.secured && weWin:
		// Only a dial that has reached the peer counts: one still trying
		// an unreachable address must not keep the peer's own link out.
		return transport.Refuse(transport.RefusalDuplicate, errSimultaneousDial)
	}
	now := m.clock.Now()
	if !replacing {
		err := m.pending.admit(id, now, func(pending int64) error {
			lim := m.limits()
			if max := lim.MaxConnections; max > 0 && m.conns.Load()+pending >= int64(max) {
				return m.refuseFull(ErrConnectionLimit)
			}
			if max := lim.MaxInboundConnections; max > 0 && m.inbound.Load()+pending >= int64(max) {
				return m.refuseFull(ErrInboundLimit)
			}
			return m.highWaterRefusal(r, pending, now)
		})
		if err != nil {
			m.dropIfUnused(r)
			return err
		}
	}
	r.admitted = now
	return nil
}

// dialer returns which peer dialed a link of direction d to r.
func (m *ConnectionManager) dialer(r *record, d transport.Direction) peer.ID {
	if d == transport.Outbound {
		return m.id
	}
	return r.id
}

// keepNew decides between an open link and a new one to the same peer,
// the same way on both ends: a peer that dials again has lost the old link
// (new wins); otherwise the link dialed by the smaller ID wins.
func (m *ConnectionManager) keepNew(r *record, old *link, newDir transport.Direction) bool {
	oldDialer, newDialer := m.dialer(r, old.dir()), m.dialer(r, newDir)
	if oldDialer == newDialer {
		return true
	}
	return newDialer.Less(oldDialer)
}
