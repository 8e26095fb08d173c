package simulation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// ErrNodeConfig is wrapped by every error of NodeConfig.Validate and
// DecodeNodeConfig; the message names the JSON field that is wrong.
var ErrNodeConfig = errors.New("simulation: bad node config")

// NodeConfig configures one node run as its own process over TCP and TLS
// 1.3 (RunNode, peersim node -config FILE): the unit an orchestrator
// runs, one per pod or host. In JSON, its field names are the tags'.
type NodeConfig struct {
	// Node is this node's index in [0, Nodes): it names the node in
	// message IDs and in the results, and, with Seed, derives its
	// identity (NodeIdentity) unless KeyFile is set.
	Node  int    `json:"node"`
	Nodes int    `json:"nodes"`
	Seed  uint64 `json:"seed"`
	// KeyFile, if set, is the node's key (peer.LoadOrCreateIdentity:
	// created on first use), for a node whose identity must not be
	// derivable from a seed.
	KeyFile string `json:"key_file,omitempty"`
	// Network is bound into every handshake ("peersim" if empty): nodes
	// of different networks refuse each other.
	Network string `json:"network,omitempty"`
	// Listen is the "host:port" the node accepts links on.
	Listen string `json:"listen"`
	// Peers are the node's neighbours in the topology.
	Peers []NodePeer `json:"peers"`
	// Workload is what the node runs over its links (nil: links only).
	// Flood and Squatters are the simulator's attacks and are refused
	// here; defaults are those of a scenario of Nodes nodes of degree
	// len(Peers).
	Workload *WorkloadSpec `json:"workload,omitempty"`
	// Start is the wall-clock instant (RFC 3339) every node of a run
	// shares: each dials its peers then, its workload counts from it,
	// and its results are times since it, so that the nodes' measures
	// line up. A node started after Start begins at once.
	Start time.Time `json:"start"`
	// Duration is how long the node runs from Start ("30s").
	Duration Duration `json:"duration"`
	// Metrics, if set, is the "host:port" serving the manager's
	// Prometheus metrics at /metrics (port 0 picks one; the node prints
	// the address it got on stderr).
	Metrics string `json:"metrics,omitempty"`
	// Results is the file the results (NodeResult, JSON) are written to
	// at exit; empty: stdout.
	Results string `json:"results,omitempty"`
	// LimitExempt lists address prefixes exempt from the manager's
	// per-IP and per-subnet limits (peerlink.Config.LimitExempt).
	// Nodes sharing one address, as on 127.0.0.1, need theirs in it:
	// peersim local sets ["127.0.0.0/8"]. Empty: every limit applies.
	LimitExempt []string `json:"limit_exempt,omitempty"`
	// MaxEvents bounds the events the node keeps for its results
	// (DefaultMaxEvents if 0); past it, events are counted in
	// NodeResult.DroppedEvents and not kept, so that a node running for
	// days holds a bounded log.
	MaxEvents int `json:"max_events,omitempty"`
}

// NodePeer is one neighbour of a node.
type NodePeer struct {
	// Node is the neighbour's index, which its events are logged under.
	Node int `json:"node"`
	// ID is its peer ID (as peer.ID prints it) and Addrs where it
	// listens (needed only to dial it).
	ID    peer.ID  `json:"id"`
	Addrs []string `json:"addrs,omitempty"`
	// Dial: this node dials the neighbour and keeps redialing it when
	// the link drops (a persistent peer). Otherwise it waits for the
	// neighbour to dial. Give each pair one dialer, as a static mesh
	// does: two persistent ends race to replace each other's link.
	Dial bool `json:"dial,omitempty"`
}

// DefaultMaxEvents is NodeConfig.MaxEvents's default: some 30 MB of
// events (120 bytes each), about two hours of a node of peersim
// local's default run (10 nodes of degree 8: some 35 gossip copies
// received a second, and 2 requests).
const DefaultMaxEvents = 250_000

// DefaultNodeNetwork is NodeConfig.Network's default.
const DefaultNodeNetwork = "peersim"

// DecodeNodeConfig reads one JSON node config, refusing unknown fields,
// and validates it.
func DecodeNodeConfig(r io.Reader) (NodeConfig, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var c NodeConfig
	if err := dec.Decode(&c); err != nil {
		return NodeConfig{}, fmt.Errorf("%w: %w", ErrNodeConfig, err)
	}
	if dec.More() {
		return NodeConfig{}, fmt.Errorf("%w: more than one JSON value", ErrNodeConfig)
	}
	return c, c.Validate()
}

// ParseNodeConfig is DecodeNodeConfig over b.
func ParseNodeConfig(b []byte) (NodeConfig, error) { return DecodeNodeConfig(bytes.NewReader(b)) }

// Validate reports the first field out of range, by its JSON name; the
// error wraps ErrNodeConfig.
func (c NodeConfig) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrNodeConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Nodes < 2 || c.Nodes > MaxNodes:
		return bad("nodes", "is %d, want 2 to %d", c.Nodes, MaxNodes)
	case c.Node < 0 || c.Node >= c.Nodes:
		return bad("node", "is %d, want 0 to nodes−1 (%d)", c.Node, c.Nodes-1)
	case c.Listen == "":
		return bad("listen", "is empty, want host:port")
	case c.Start.IsZero():
		return bad("start", "is missing, want an RFC 3339 instant all nodes share")
	case c.Duration <= 0:
		return bad("duration", "is %v, want a positive duration such as \"30s\"", c.Duration)
	case c.MaxEvents < 0:
		return bad("max_events", "is %d, want 0 (%d) or more", c.MaxEvents, DefaultMaxEvents)
	}
	if !validHostPort(c.Listen) {
		return bad("listen", "is %q, want host:port", c.Listen)
	}
	if c.Metrics != "" && !validHostPort(c.Metrics) {
		return bad("metrics", "is %q, want host:port", c.Metrics)
	}
	seen := map[int]bool{c.Node: true}
	for k, p := range c.Peers {
		f := fmt.Sprintf("peers[%d]", k)
		switch {
		case p.Node < 0 || p.Node >= c.Nodes:
			return bad(f+".node", "is %d, want 0 to nodes−1 (%d)", p.Node, c.Nodes-1)
		case seen[p.Node]:
			return bad(f+".node", "is %d, this node or a peer listed before", p.Node)
		case p.ID.IsZero():
			return bad(f+".id", "is missing")
		case p.Dial && len(p.Addrs) == 0:
			return bad(f+".addrs", "is empty, and dial is set")
		}
		seen[p.Node] = true
		for a, addr := range p.Addrs {
			if !validHostPort(addr) {
				return bad(fmt.Sprintf("%s.addrs[%d]", f, a), "is %q, want host:port", addr)
			}
		}
	}
	for k, s := range c.LimitExempt {
		if _, err := netip.ParsePrefix(s); err != nil {
			return bad(fmt.Sprintf("limit_exempt[%d]", k), "is %q, want a prefix such as 127.0.0.0/8", s)
		}
	}
	if w := c.Workload; w != nil {
		switch {
		case w.Flood != nil:
			return bad("workload.flood", "is set: attacks run in the simulator only")
		case len(w.Squatters) > 0:
			return bad("workload.squatters", "is set: attacks run in the simulator only")
		}
		if field, problem := w.validate(c.Nodes); field != "" {
			return bad("workload."+field, "%s", problem)
		}
	}
	return nil
}

// validHostPort reports whether s is "host:port" with a port number (a
// host name is fine: an orchestrator's service names).
func validHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// workload returns the config's workload with its defaults.
func (c NodeConfig) workload() *WorkloadSpec {
	if c.Workload == nil {
		return nil
	}
	w := c.Workload.clone()
	w.withDefaults(Scenario{Nodes: c.Nodes, Degree: len(c.Peers)})
	return w
}

// NodeIdentity returns node i's identity for a seed, as the simulator
// derives it: a NodeConfig without KeyFile uses it, so that its peers
// can know its ID in advance.
func NodeIdentity(seed uint64, i int) (*peer.Identity, error) { return identity(seed, i) }
