package simulation

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/transport"
	"github.com/peerlink/peerlink/transport/faultnet"
)

// ErrBadLink is wrapped by the errors of link figures out of range.
var ErrBadLink = errors.New("simulation: bad link")

// LinkSpec sets the figures of every directed link of a Network.
//
// Each directed link a→b gets its own true latency, drawn once from the
// seed, uniformly in [Latency − Spread, Latency + Spread]: the figure a
// node's selection is judged against (Network.Link). Each packet (what
// one write handed over) then takes that latency give or take up to
// Jitter, uniformly, drawn from the seed, the link, the connection's
// virtual start and the packet's rank, so that a run repeats; packets
// stay in order, so one that would overtake its predecessor waits for it
// (as TCP delivers them).
//
// Bandwidth (bytes per second, 0 for none) and Buffer (bytes, 0 for
// faultnet's default) are the bottleneck of every directed link.
type LinkSpec struct {
	Latency   Duration `json:"latency"`
	Spread    Duration `json:"spread,omitempty"`
	Jitter    Duration `json:"jitter,omitempty"`
	Bandwidth int64    `json:"bandwidth,omitempty"`
	Buffer    int      `json:"buffer,omitempty"`
}

// Validate reports the first field out of range, by name.
func (s LinkSpec) Validate() error {
	switch {
	case s.Latency < 0:
		return fmt.Errorf("%w: Latency %v is negative", ErrBadLink, s.Latency)
	case s.Spread < 0 || s.Spread > s.Latency:
		return fmt.Errorf("%w: Spread %v, want 0 to Latency (%v)", ErrBadLink, s.Spread, s.Latency)
	case s.Jitter < 0 || s.Jitter > s.Latency-s.Spread:
		return fmt.Errorf("%w: Jitter %v, want 0 to Latency − Spread (%v)", ErrBadLink, s.Jitter, s.Latency-s.Spread)
	case s.Bandwidth < 0:
		return fmt.Errorf("%w: Bandwidth %d is negative", ErrBadLink, s.Bandwidth)
	case s.Buffer < 0:
		return fmt.Errorf("%w: Buffer %d is negative", ErrBadLink, s.Buffer)
	}
	return nil
}

// Network is an in-memory network of n nodes whose every directed link
// has figures the harness decides and knows: latency, bandwidth and a
// bounded queue (faultnet.Link, under each node's handshake), slowdowns
// from a given time, and faults (resets, black holes, partitions).
//
// Node i listens on Addr(i) with the transport Transport(i) returns; all
// the nodes of a network must use those transports, because a listener
// learns which node dialed it from the dialer's own wrapper (a memory
// dial's source address names no node).
//
// Call the methods that create links (dials, Degrade) inside the
// testing/synctest bubble the simulation runs in, if any: the shaping
// goroutines they start belong to the bubble.
type Network struct {
	mem   *transport.MemoryNetwork
	n     int
	seed  uint64
	spec  LinkSpec
	addrs map[string]int // listen address → node

	mu       sync.Mutex
	override map[dirPair]faultnet.Link   // SetLink
	degraded map[dirPair][]faultnet.Link // Degrade, in order
	conns    map[pairKey]map[*simConn]struct{}
	dials    map[string]*dialReg // a dialer's source address → who dialed
	group    []int               // partition group per node; nil when whole
}

type dirPair struct{ from, to int }

// pairKey is an unordered pair {a, b}, a < b.
type pairKey struct{ a, b int }

func keyOf(a, b int) pairKey {
	if a > b {
		a, b = b, a
	}
	return pairKey{a, b}
}

// dialReg tells a listener which node a raw memory conn came from; ready
// is closed once from is set (the listener's wrapper may run first).
type dialReg struct {
	ready chan struct{}
	from  int
}

// NewNetwork returns a network of n nodes whose links follow spec, their
// figures drawn from seed.
func NewNetwork(n int, spec LinkSpec, seed uint64) (*Network, error) {
	if n < 1 {
		return nil, fmt.Errorf("simulation: network of %d nodes, want at least 1", n)
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	nw := &Network{
		mem:      transport.NewMemoryNetwork(),
		n:        n,
		seed:     seed,
		spec:     spec,
		addrs:    make(map[string]int, n),
		override: make(map[dirPair]faultnet.Link),
		degraded: make(map[dirPair][]faultnet.Link),
		conns:    make(map[pairKey]map[*simConn]struct{}),
		dials:    make(map[string]*dialReg),
	}
	for i := range n {
		nw.addrs[nw.Addr(i)] = i
	}
	return nw, nil
}

// Nodes returns the number of nodes.
func (nw *Network) Nodes() int { return nw.n }

// Addr returns node i's listen address.
func (nw *Network) Addr(i int) string { return "node-" + strconv.Itoa(i) }

// Transport returns node i's transport: the memory transport with every
// raw conn shaped and watched by the network.
func (nw *Network) Transport(i int) peerlink.TransportFunc {
	nw.check(i)
	mem := peerlink.MemoryTransport(nw.mem)
	return func(cfg transport.Config) (transport.Transport, error) {
		cfg.RawConnWrapper = func(c net.Conn) net.Conn { return nw.wrap(i, c) }
		return mem(cfg)
	}
}

// ErrNoNode is wrapped by the errors of methods given a node index out
// of range; the methods that return no error panic with it instead, as
// an index out of range does.
var ErrNoNode = errors.New("simulation: no such node")

func (nw *Network) valid(nodes ...int) error {
	for _, i := range nodes {
		if i < 0 || i >= nw.n {
			return fmt.Errorf("%w: node %d, want 0 to %d", ErrNoNode, i, nw.n-1)
		}
	}
	return nil
}

func (nw *Network) check(nodes ...int) {
	if err := nw.valid(nodes...); err != nil {
		panic(err)
	}
}

// mix is SplitMix64's finalizer: a fixed, well-spread hash of x.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// uniform returns a figure in [center − spread, center + spread] chosen
// by hash h.
func uniform(center, spread time.Duration, h uint64) time.Duration {
	if spread <= 0 {
		return center
	}
	return center - spread + time.Duration(h%uint64(2*spread+1))
}

// baseLink returns from→to's figures before any Degrade: SetLink's if
// set, else drawn from the seed. nw.mu is held.
func (nw *Network) baseLink(from, to int) faultnet.Link {
	if l, ok := nw.override[dirPair{from, to}]; ok {
		return l
	}
	h := mix(nw.seed ^ mix(streamLinks<<48^uint64(from)<<24^uint64(to)))
	return faultnet.Link{
		Latency:   uniform(nw.spec.Latency.D(), nw.spec.Spread.D(), h),
		Bandwidth: nw.spec.Bandwidth,
		Buffer:    nw.spec.Buffer,
	}
}

// Link returns the true figures of the directed link from→to now: its
// latency and bandwidth with every Degrade applied (latencies add, the
// narrowest bandwidth wins). Connections vary around its latency by the
// spec's Jitter.
func (nw *Network) Link(from, to int) faultnet.Link {
	nw.check(from, to)
	nw.mu.Lock()
	defer nw.mu.Unlock()
	l := nw.baseLink(from, to)
	for _, d := range nw.degraded[dirPair{from, to}] {
		l.Latency += d.Latency
		if d.Bandwidth > 0 && (l.Bandwidth == 0 || d.Bandwidth < l.Bandwidth) {
			l.Bandwidth = d.Bandwidth
		}
	}
	return l
}

// RTT returns the true round-trip time between a and b now: the sum of
// the two directions' latencies (Link), which per-packet jitter varies
// around, and which queueing behind other traffic adds to. It is what a
// node's latency estimate of the other should approach on an idle link.
func (nw *Network) RTT(a, b int) time.Duration {
	return nw.Link(a, b).Latency + nw.Link(b, a).Latency
}

// checkLink validates the arguments of SetLink and Degrade.
func (nw *Network) checkLink(op string, from, to int, l faultnet.Link) error {
	if err := nw.valid(from, to); err != nil {
		return err
	}
	if l.Latency < 0 || l.Bandwidth < 0 || l.Buffer < 0 {
		return fmt.Errorf("%w: %s %d→%d: %+v has a negative field", ErrBadLink, op, from, to, l)
	}
	return nil
}

// SetLink sets from→to's figures for the connections made from now on
// (live ones keep theirs; Degrade slows live ones).
func (nw *Network) SetLink(from, to int, l faultnet.Link) error {
	if err := nw.checkLink("set link", from, to, l); err != nil {
		return err
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.override[dirPair{from, to}] = l
	return nil
}

// Degrade slows the directed link from→to from now on, live connections
// included: every later write from `from` to `to` also passes a
// bottleneck of extra's Bandwidth (0: none) and extra's Latency. Calls
// add up. Bytes already written keep their old schedule; the order of
// bytes is kept.
func (nw *Network) Degrade(from, to int, extra faultnet.Link) error {
	if err := nw.checkLink("degrade", from, to, extra); err != nil {
		return err
	}
	nw.mu.Lock()
	p := dirPair{from, to}
	nw.degraded[p] = append(nw.degraded[p], extra)
	var live []*simConn
	for c := range nw.conns[keyOf(from, to)] {
		if c.local == from {
			live = append(live, c)
		}
	}
	nw.mu.Unlock()
	for _, c := range live {
		c.push(extra)
	}
	return nil
}

// Conns returns how many raw conn ends are open between a and b (a link
// whose both ends are open counts twice).
func (nw *Network) Conns(a, b int) int {
	nw.check(a, b)
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return len(nw.conns[keyOf(a, b)])
}

func (nw *Network) live(a, b int) []*simConn {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	cs := make([]*simConn, 0, len(nw.conns[keyOf(a, b)]))
	for c := range nw.conns[keyOf(a, b)] {
		cs = append(cs, c)
	}
	return cs
}

// Reset kills every connection between a and b now, as a RST or a dead
// NIC would: both ends' reads and writes fail. It returns how many
// conn ends it closed. New connections are not affected.
func (nw *Network) Reset(a, b int) int {
	nw.check(a, b)
	cs := nw.live(a, b)
	for _, c := range cs {
		_ = c.Close()
	}
	return len(cs)
}

// BlackHole silences every connection now open between a and b: writes
// report success and their bytes vanish, reads return nothing (a read
// deadline still fires), and the sockets stay open, as when a stateful
// firewall or NAT loses the flow. Only a timeout can notice it. It is
// final for those connections (bytes lost in the middle of a stream
// cannot be recovered); connections made later are healthy (a lasting
// cut is a Partition). It returns how many conn ends it silenced.
func (nw *Network) BlackHole(a, b int) int {
	nw.check(a, b)
	cs := nw.live(a, b)
	for _, c := range cs {
		c.blackHole()
	}
	return len(cs)
}

// BlackHoleNode silences every connection now open to or from node i,
// as BlackHole does for a pair; it returns how many conn ends it
// silenced.
func (nw *Network) BlackHoleNode(i int) int {
	nw.check(i)
	nw.mu.Lock()
	var cs []*simConn
	for k, set := range nw.conns {
		if k.a == i || k.b == i {
			for c := range set {
				cs = append(cs, c)
			}
		}
	}
	nw.mu.Unlock()
	for _, c := range cs {
		c.blackHole()
	}
	return len(cs)
}

// Partition cuts the network into groups: every connection between
// nodes of different groups is black-holed now, and connections made
// across the cut until Heal start black-holed (a dial then times out in
// its handshake, as one to an unreachable host does). Nodes listed in no
// group form one more group together. A node listed twice is an error.
// A new Partition replaces the previous one; connections it silenced
// stay silent.
func (nw *Network) Partition(groups ...[]int) error {
	g := make([]int, nw.n)
	for i := range g {
		g[i] = -1
	}
	for k, grp := range groups {
		for _, i := range grp {
			if err := nw.valid(i); err != nil {
				return fmt.Errorf("simulation: partition group %d: %w", k, err)
			}
			if g[i] >= 0 {
				return fmt.Errorf("simulation: partition: node %d is in groups %d and %d", i, g[i], k)
			}
			g[i] = k
		}
	}
	for i := range g {
		if g[i] < 0 {
			g[i] = len(groups)
		}
	}
	nw.mu.Lock()
	nw.group = g
	var cut []*simConn
	for k, cs := range nw.conns {
		if g[k.a] != g[k.b] {
			for c := range cs {
				cut = append(cut, c)
			}
		}
	}
	nw.mu.Unlock()
	for _, c := range cut {
		c.blackHole()
	}
	return nil
}

// Heal ends the partition: connections made from now on cross freely.
// Those it silenced stay silent until their ends close them.
func (nw *Network) Heal() {
	nw.mu.Lock()
	nw.group = nil
	nw.mu.Unlock()
}

// Partitioned reports whether a and b are on different sides of the
// current partition.
func (nw *Network) Partitioned(a, b int) bool {
	nw.check(a, b)
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.cutLocked(a, b)
}

func (nw *Network) cutLocked(a, b int) bool { return nw.group != nil && nw.group[a] != nw.group[b] }

// wrap is node local's RawConnWrapper.
func (nw *Network) wrap(local int, c net.Conn) net.Conn {
	la, ra := c.LocalAddr().String(), c.RemoteAddr().String()
	if remote, ok := nw.addrs[ra]; ok {
		// Outbound: say who we are to the listener, which sees only la.
		r := nw.dialReg(la)
		r.from = local
		close(r.ready)
		// The listener's wrapper deletes the registration. One that a
		// listener refuses before wrapping (a full pending table) stays:
		// a few words per refused dial. Deleting it here instead, when
		// the conn closes, could strand a listener that comes later.
		return nw.attach(c, local, remote)
	}
	// Inbound: the dialer registers before it writes its first byte, and
	// at the same virtual instant this conn was accepted; wait on a
	// channel, which keeps a synctest bubble's clock running.
	r := nw.dialReg(ra)
	<-r.ready
	nw.mu.Lock()
	delete(nw.dials, ra)
	nw.mu.Unlock()
	return nw.attach(c, local, r.from)
}

// dialReg returns the registration of the dial from source address
// addr, made by whichever of its two ends asks first.
func (nw *Network) dialReg(addr string) *dialReg {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	r := nw.dials[addr]
	if r == nil {
		r = &dialReg{ready: make(chan struct{})}
		nw.dials[addr] = r
	}
	return r
}

// attach shapes raw conn c from local to remote and tracks it.
func (nw *Network) attach(c net.Conn, local, remote int) *simConn {
	nw.mu.Lock()
	base := nw.baseLink(local, remote)
	extra := nw.degraded[dirPair{local, remote}]
	cut := nw.cutLocked(local, remote)
	nw.mu.Unlock()

	// Jitter J: the bottleneck's latency is L − J and each packet waits
	// a further 0 to 2J of its own, so the mean stays the link's L.
	if jitter := nw.spec.Jitter.D(); jitter > 0 {
		base.Latency -= jitter
		base.Jitter = 2 * jitter
		// The conn's packets draw from the seed, the link and the
		// virtual instant the conn was made: a run repeats.
		base.JitterSeed = mix(nw.seed ^ mix(uint64(time.Now().UnixNano())^uint64(local)<<40^uint64(remote)<<16))
	}
	top := base.Wrap(c)
	for _, d := range extra {
		top = d.Wrap(top)
	}
	sc := &simConn{Conn: c, nw: nw, local: local, remote: remote, top: top, holed: make(chan struct{}), done: make(chan struct{}), rdl: newMovable()}
	nw.mu.Lock()
	k := keyOf(local, remote)
	if nw.conns[k] == nil {
		nw.conns[k] = make(map[*simConn]struct{})
	}
	nw.conns[k][sc] = struct{}{}
	cut = cut || nw.cutLocked(local, remote) // a Partition while we shaped
	nw.mu.Unlock()
	if cut {
		sc.blackHole()
	}
	return sc
}

func (nw *Network) forget(c *simConn) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	k := keyOf(c.local, c.remote)
	delete(nw.conns[k], c)
	if len(nw.conns[k]) == 0 {
		delete(nw.conns, k)
	}
}

// simConn is one end of a raw memory conn: its writes pass a stack of
// faultnet shapers (the link's figures, then each Degrade), and it can be
// black-holed. The embedded Conn is the raw conn, for its addresses.
type simConn struct {
	net.Conn
	nw            *Network
	local, remote int

	mu     sync.Mutex
	top    net.Conn  // the stack's top: Write and Read go through it
	wdl    time.Time // the write deadline, for layers pushed later
	rdl    movable   // the read deadline, for reads waiting in a hole
	closed bool
	done   chan struct{} // closed by Close

	holeOnce sync.Once
	holed    chan struct{}
}

func (c *simConn) current() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.top
}

func (c *simConn) isHoled() bool {
	select {
	case <-c.holed:
		return true
	default:
		return false
	}
}

func (c *simConn) blackHole() { c.holeOnce.Do(func() { close(c.holed) }) }

// push puts a shaper for extra on top of the stack: later writes pass it
// before the older ones, so their order is kept.
func (c *simConn) push(extra faultnet.Link) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	// The caller's write deadline bounds its writes into the new top;
	// the layer below is written by the top's delivery goroutine, which
	// an old deadline there would fail.
	_ = c.top.SetWriteDeadline(time.Time{})
	top := extra.Wrap(c.top)
	if !c.wdl.IsZero() {
		_ = top.SetWriteDeadline(c.wdl)
	}
	c.top = top
}

// Read reads through the stack. Once black-holed it discards whatever
// still arrives, hides the far end's close (which cannot cross the hole
// either) and returns only at the read deadline or its own Close.
func (c *simConn) Read(p []byte) (int, error) {
	for {
		n, err := c.current().Read(p)
		if !c.isHoled() {
			return n, err
		}
		if err == nil {
			continue
		}
		if isTimeout(err) {
			return 0, err
		}
		return 0, c.waitHoled()
	}
}

// waitHoled blocks a read on a black-holed conn whose far end is gone
// until the read deadline passes or the conn is closed.
func (c *simConn) waitHoled() error {
	for {
		c.mu.Lock()
		dl := c.rdl
		c.mu.Unlock()
		switch waitUntil(dl, c.done, nil) {
		case expired:
			return &net.OpError{Op: "read", Net: "memory", Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
		case woken:
			return &net.OpError{Op: "read", Net: "memory", Addr: c.RemoteAddr(), Err: net.ErrClosed}
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Write writes through the stack; once black-holed it reports success
// and drops the bytes.
func (c *simConn) Write(p []byte) (int, error) {
	if c.isHoled() {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return 0, &net.OpError{Op: "write", Net: "memory", Addr: c.RemoteAddr(), Err: net.ErrClosed}
		}
		return len(p), nil
	}
	return c.current().Write(p)
}

// Close closes the stack (each shaper flushes what it holds, then closes
// the one below) and stops tracking the conn.
func (c *simConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return &net.OpError{Op: "close", Net: "memory", Addr: c.RemoteAddr(), Err: net.ErrClosed}
	}
	c.closed = true
	close(c.done)
	top := c.top
	c.mu.Unlock()
	c.nw.forget(c)
	return top.Close()
}

func (c *simConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *simConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl.set(t)
	top := c.top
	c.mu.Unlock()
	return top.SetReadDeadline(t)
}

func (c *simConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wdl = t
	return c.top.SetWriteDeadline(t)
}
