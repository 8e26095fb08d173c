package mux

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
)

// The guard decides, for every frame the remote sends, whether yamux may
// see it (see recvfilter.go). It follows every stream ID through its
// life from the frames both sides send: opened (SYN), half-closed by
// either side (FIN), both closed (forgotten, as yamux forgets it), or
// reset (dead). A dead stream is remembered with an allowance: the data
// the remote may still have had in flight when the reset crossed it,
// which is at most the stream's receive window. Data for a dead stream
// is dropped before yamux buffers it; past the allowance, and for IDs
// that were never opened, it is junk. A remote that sends more junk than
// one window, opens a stream ID twice, or floods pings has broken the
// protocol in a way that costs us, and the session ends with
// ErrProtocolViolation.
type guard struct {
	mu        sync.Mutex
	live      map[uint32]uint8 // open streams: liveRemote, liveLocalFIN, ...
	dead      map[uint32]deadStream
	ring      [deadRingSize]uint32
	ringLen   int
	ringNext  int
	junk      int64 // data bytes dropped beyond every allowance
	allowance int64 // a dead stream's allowance: the receive window
	junkLimit int64

	pongs        [][frameHeaderLen]byte // answers to the remote's pings, not yet sent
	pingsDropped int

	// The recv goroutine's shortcut for the common case, a data frame
	// without flags for the stream of the frame before: passID passed
	// while the maps were at generation passGen, and gen moves on with
	// every change to them, so the frame passes without the lock.
	gen     atomic.Uint64
	passID  uint32
	passGen uint64
}

// deadStream is a stream the guard drops data for.
type deadStream struct {
	left int64 // allowance left
	// unread: the stream was not reset but closed for reading (its
	// handler returned); once the allowance is spent, the remote is told
	// with a reset of code 7 that its data goes nowhere.
	unread bool
}

// Stream states in guard.live.
const (
	liveRemote    = 1 << iota // the remote opened it
	liveLocalFIN              // we sent FIN
	liveRemoteFIN             // the remote sent FIN
)

const (
	// deadRingSize is how many reset streams the guard remembers; older
	// ones are forgotten (their late data then counts as junk, which an
	// honest remote never sends that late).
	deadRingSize = 1024
	// maxPendingPongs bounds the ping answers waiting to be written; a
	// ping beyond it goes unanswered, and maxDroppedPings of those end
	// the session. A remote has one or two pings in flight (keepalive,
	// health checks): only a flood that outpaces our writes reaches these.
	maxPendingPongs = 16
	maxDroppedPings = 256
)

func (g *guard) init(window uint32) {
	g.live = make(map[uint32]uint8)
	g.dead = make(map[uint32]deadStream)
	g.allowance = int64(window)
	g.junkLimit = int64(window)
}

// killLocked moves id to the dead streams with the given allowance.
func (g *guard) killLocked(id uint32, d deadStream) {
	g.gen.Add(1)
	delete(g.live, id)
	if old, ok := g.dead[id]; ok {
		if old.unread && !d.unread {
			old.unread = false // reset meanwhile: nobody to tell
			g.dead[id] = old
		}
		return
	}
	if g.ringLen == deadRingSize {
		delete(g.dead, g.ring[g.ringNext])
	} else {
		g.ringLen++
	}
	g.ring[g.ringNext] = id
	g.ringNext = (g.ringNext + 1) % deadRingSize
	d.left = max(d.left, 0)
	g.dead[id] = d
}

// noteOut follows a frame this side writes (SYN, FIN or RST), before it
// is written. Called under the frame conn's write lock.
func (g *guard) noteOut(id uint32, flags uint16) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gen.Add(1)
	switch {
	case flags&flagRST != 0:
		g.killLocked(id, deadStream{left: g.allowance})
	case flags&flagSYN != 0:
		if _, dead := g.dead[id]; !dead {
			g.live[id] = 0
		}
		fallthrough
	case flags&flagFIN != 0:
		if st, ok := g.live[id]; ok && flags&flagFIN != 0 {
			if st&liveRemoteFIN != 0 {
				delete(g.live, id)
			} else {
				g.live[id] = st | liveLocalFIN
			}
		}
	}
}

// recvClosed marks id as read by nobody any more (its handler returned
// before the remote closed its side): data that arrives for it from now
// on is dropped, and once a window's worth has been, the remote is told
// with a reset of code 7. (Not at once: a reset makes the remote drop
// what it has not read yet, such as the handler's answer, as a TCP RST
// does; a remote that keeps writing into the void after a window has
// no answer to wait for.)
func (g *guard) recvClosed(id uint32) {
	g.mu.Lock()
	if _, ok := g.live[id]; ok {
		g.killLocked(id, deadStream{left: g.allowance, unread: true})
	}
	g.mu.Unlock()
}

// verdict is the guard's decision on one frame.
type verdict uint8

const (
	pass      verdict = iota // hand the frame to yamux
	drop                     // cut it out
	admitSYN                 // a new stream from the remote: ask the session
	resetRecv                // a window of data for a stream nobody reads: drop, and reset it (code 7)
	violation                // drop, and end the session
)

// judge decides on a data or window update frame from the remote. It
// does not decide new streams (admitSYN: the caller asks the session,
// then calls opened or refused).
func (g *guard) judge(flags uint16, id uint32, body uint32) (verdict, string) {
	if flags == 0 && id == g.passID && g.gen.Load() == g.passGen {
		return pass, "" // as the frame before; nothing changed since
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	st, live := g.live[id]
	d, dead := g.dead[id]
	if flags&flagSYN != 0 {
		if live || dead {
			return violation, fmt.Sprintf("stream %d opened a second time", id)
		}
		return admitSYN, ""
	}
	switch {
	case live:
		switch {
		case flags&flagRST != 0:
			g.killLocked(id, deadStream{})
		case flags&flagFIN != 0:
			g.gen.Add(1)
			if st&liveLocalFIN != 0 {
				delete(g.live, id)
			} else {
				g.live[id] = st | liveRemoteFIN
			}
		default:
			g.passID, g.passGen = id, g.gen.Load()
		}
		return pass, ""
	case body == 0 && flags&(flagFIN|flagRST) != 0:
		return pass, "" // the session keeps its books on these; yamux ignores them
	case body == 0:
		return drop, ""
	case dead && int64(body) <= d.left:
		d.left -= int64(body)
		g.dead[id] = d
		return drop, ""
	case dead && d.unread:
		g.dead[id] = deadStream{}
		g.junk += int64(body) - d.left
		return resetRecv, ""
	}
	g.junk += int64(body) - d.left
	if dead {
		g.dead[id] = deadStream{}
	}
	if g.junk > g.junkLimit {
		return violation, fmt.Sprintf("%d bytes of data for streams that were reset or never opened (last: stream %d)", g.junk, id)
	}
	return drop, ""
}

// opened records a stream of the remote's that the session admitted.
func (g *guard) opened(id uint32) {
	g.mu.Lock()
	g.gen.Add(1)
	g.live[id] = liveRemote
	g.mu.Unlock()
}

// refused records a stream of the remote's that the session refused at
// its SYN: whatever the remote sends for it until it sees the reset is
// dropped. body is the data that came with the SYN. It reports false if
// that alone was beyond the allowance.
func (g *guard) refused(id uint32, body uint32) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.killLocked(id, deadStream{left: g.allowance - int64(body)})
	return int64(body) <= g.allowance
}

// pong queues the answer to the remote's ping; it reports false once
// maxDroppedPings pings went unanswered. queued says whether the answer
// was queued (and so whether the writer must be woken).
func (g *guard) pong(opaque uint32) (ok, queued bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pongs) >= maxPendingPongs {
		g.pingsDropped++
		return g.pingsDropped < maxDroppedPings, false
	}
	var f [frameHeaderLen]byte
	f[0], f[1] = frameVersion, typePing
	binary.BigEndian.PutUint16(f[2:4], flagACK)
	binary.BigEndian.PutUint32(f[8:12], opaque)
	g.pongs = append(g.pongs, f)
	return true, true
}

// takePongs returns the queued ping answers and empties the queue.
func (g *guard) takePongs(buf [][frameHeaderLen]byte) [][frameHeaderLen]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	buf = append(buf[:0], g.pongs...)
	g.pongs = g.pongs[:0]
	return buf
}

// typePing is yamux's ping frame type.
const typePing = 2

// inspect is the frame tracker's admit hook: it runs on yamux's recv
// goroutine for every frame header the remote sends, before yamux sees
// it, and must not block.
func (s *Session) inspect(h *[frameHeaderLen]byte) bool {
	flags := binary.BigEndian.Uint16(h[2:4])
	id := binary.BigEndian.Uint32(h[4:8])
	length := binary.BigEndian.Uint32(h[8:12])
	switch h[1] {
	case typePing:
		if flags&flagSYN == 0 {
			return true // the answer to one of ours: yamux's
		}
		// The remote's ping is answered here, by the control goroutine:
		// yamux would start a goroutine for each ping, and a remote that
		// floods pings without reading our answers would pile them up.
		ok, queued := s.guard.pong(length)
		if !ok {
			s.violate(fmt.Sprintf("%d pings left unanswered: the remote sends pings faster than it reads their answers", maxDroppedPings))
		} else if queued {
			s.mu.Lock()
			s.startControlLocked()
			s.mu.Unlock()
		}
		return false
	case typeGoAway:
		return true
	}
	var body uint32
	if h[1] == typeData {
		body = length
	}
	v, why := s.guard.judge(flags, id, body)
	switch v {
	case pass:
		return true
	case admitSYN:
		code, ok := s.admitInbound(id)
		if ok {
			s.guard.opened(id)
			return true
		}
		if !s.guard.refused(id, body) {
			s.violate(fmt.Sprintf("a refused stream's first frame carried %d bytes, more than a window", body))
			return false
		}
		s.dropFor(id, code, body)
		return false
	case resetRecv:
		s.dropFor(id, ResetReceiverGone, body)
		return false
	case violation:
		s.violate(why)
		return false
	}
	s.junk.Add(uint64(body))
	return false
}

// violate ends the session because the remote broke the protocol: the
// frame conn's next Read fails, which ends yamux's receive loop, and so
// the session, with an error wrapping ErrProtocolViolation.
func (s *Session) violate(why string) {
	err := fmt.Errorf("%w: %s", ErrProtocolViolation, why)
	if s.fc.rx.err == nil {
		s.fc.rx.err = err
		s.log.Warn().Err(err).Msg("ending session")
	}
}

// admitInbound decides on a stream the remote opens, at its SYN: it
// takes a slot of the session and the stream's memory in NodeLimits. A refused stream never reaches yamux.
// After a GoAway, or once the session is closing, the stream is left to
// yamux and the accept loop, which refuse it.
func (s *Session) admitInbound(id uint32) (ResetCode, bool) {
	if s.fc.goAway.Load() {
		return 0, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.ended {
		return 0, true
	}
	mem, code, ok := s.takeInboundLocked()
	if !ok {
		return code, false
	}
	s.synAdmitted[id] = mem
	return 0, true
}

// takeInboundLocked takes a session slot and memory for an inbound
// stream, counting it. s.mu must be held.
func (s *Session) takeInboundLocked() (mem int64, code ResetCode, ok bool) {
	// The stream's priority is in its header, not known yet: it is
	// checked against the whole MaxStreams. (The node-wide inbound pool,
	// taken once the header is in, has no reserved share to take.)
	if !s.slots.TryAcquire(PriorityCritical) {
		s.limitRefused.Add(1)
		s.cfg.Totals.refused(false)
		return 0, ResetStreamLimit, false
	}
	if n := s.cfg.Node; n != nil {
		if !n.reserve(s.streamMem) {
			s.slots.Release()
			s.limitRefused.Add(1)
			s.budgetRefused.Add(1)
			s.cfg.Totals.refused(true)
			return 0, ResetStreamLimit, false
		}
		mem = s.streamMem
	}
	s.inbound++
	s.publishStreamsLocked()
	return mem, 0, true
}

// giveInboundLocked gives back what takeInboundLocked took, for a stream
// that never became a Stream.
func (s *Session) giveInboundLocked(mem int64) {
	s.slots.Release()
	if mem > 0 {
		s.cfg.Node.unreserve(mem)
	}
	s.inbound--
	s.publishStreamsLocked()
}

// pingsDropped returns how many of the remote's pings went unanswered.
func (s *Session) pingsDropped() int {
	s.guard.mu.Lock()
	defer s.guard.mu.Unlock()
	return s.guard.pingsDropped
}

// ctrlRST is a reset the control goroutine is to send.
type ctrlRST struct {
	id   uint32
	code ResetCode
}

// rstFrame returns a RST frame for stream id with code.
func rstFrame(id uint32, code ResetCode) [frameHeaderLen]byte {
	var f [frameHeaderLen]byte
	f[0] = frameVersion
	f[1] = typeWindowUpdate
	binary.BigEndian.PutUint16(f[2:4], flagRST)
	binary.BigEndian.PutUint32(f[4:8], id)
	binary.BigEndian.PutUint32(f[8:12], uint32(code))
	return f
}

// forgetInYamux makes yamux drop stream id now, as if the remote had
// reset it, rather than hold it (and what it buffered) half-closed until
// the remote's FIN or StreamCloseTimeout. The guard already drops what
// the remote sends for the stream.
func (s *Session) forgetInYamux(id uint32) {
	s.fc.injectIn(rstFrame(id, ResetUnknown))
}

// dropFor counts a dropped frame's body and queues a RST with code for
// stream id.
func (s *Session) dropFor(id uint32, code ResetCode, body uint32) {
	s.junk.Add(uint64(body))
	s.mu.Lock()
	s.queueResetLocked(id, code)
	s.mu.Unlock()
}
