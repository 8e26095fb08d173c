package peerlink

import (
	"sync"
	"time"

	"github.com/peerlink/peerlink/peer"
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
