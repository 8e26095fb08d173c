package peerlink_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/trim"
)

// Watermarks: past 200 links the node trims down to 160, worst first by
// quality score and tags, sparing protected and persistent peers and
// links younger than a minute.
func ExampleTrimConfig() {
	cfg := peerlink.DefaultConfig()
	cfg.MaxConnections = 400
	cfg.Trim = peerlink.TrimConfig{HighWater: 200, LowWater: 160, GracePeriod: time.Minute}
	m, err := peerlink.New(cfg)
	if err != nil {
		panic(err)
	}
	defer m.Close()
	l := m.ConnectionLimits()
	fmt.Println(l.Trim.HighWater, l.Trim.LowWater, l.Trim.SilencePeriod, l.Trim.MinOutbound)
	// Output: 200 160 10s 8
}

// Protection and tags: the validator's sentry is never trimmed; a mesh
// peer ranks 20 points higher (a fifth of a perfect score).
func ExampleConnectionManager_Protect() {
	m, err := peerlink.New(peerlink.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer m.Close()
	sentry, mesh := exampleID(1), exampleID(2)
	_ = m.Protect(sentry, "sentry")
	_ = m.TagPeer(mesh, "mesh", 20)
	fmt.Println(m.IsProtected(sentry, ""), m.Unprotect(sentry, "sentry"))
	info, _ := m.TagInfo(mesh)
	fmt.Println(info.Tags["mesh"], info.Value)
	// Output:
	// true false
	// 20 20
}

// A decaying tag, as go-libp2p-pubsub tags first deliveries: +1 per
// delivery up to 15, less 1 every 10 minutes.
func ExampleConnectionManager_RegisterDecayingTag() {
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	cfg := peerlink.DefaultConfig()
	cfg.Clock = fake
	// Tags live in the peer's record, which a peer without a link keeps
	// for RecordRetention after its last activity.
	cfg.RecordRetention = time.Hour
	m, err := peerlink.New(cfg)
	if err != nil {
		panic(err)
	}
	defer m.Close()
	deliveries, err := m.RegisterDecayingTag("first-delivery", 10*time.Minute, trim.DecayFixed(1), trim.BumpSumBounded(0, 15))
	if err != nil {
		panic(err)
	}
	p := exampleID(3)
	for range 20 {
		_ = deliveries.Bump(p, 1)
	}
	info, _ := m.TagInfo(p)
	fmt.Println(info.Value)
	fake.Advance(25 * time.Minute)
	info, _ = m.TagInfo(p)
	fmt.Println(info.Value)
	// Output:
	// 15
	// 13
}

// Limits at run time: shrinking them trims the worst links at once;
// growing them lets more in.
func ExampleConnectionManager_SetConnectionLimits() {
	m, err := peerlink.New(peerlink.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer m.Close()
	err = m.SetConnectionLimits(peerlink.ConnectionLimits{MaxConnections: 100, MaxInboundConnections: 60})
	fmt.Println(err, m.ConnectionLimits().Trim.HighWater, m.ConnectionLimits().Trim.LowWater)
	err = m.SetConnectionLimits(peerlink.ConnectionLimits{MaxConnections: 100, Trim: peerlink.TrimConfig{HighWater: 150}})
	fmt.Println(err)
	// Output:
	// <nil> 50 40
	// peerlink: invalid config: Trim.HighWater is 150, more than MaxConnections (100)
}

// TrimOpenConns trims now, without waiting for the silence period; it
// returns how many links it closed. EvictIdle and EvictUnhealthy do what
// the cleanup task does every Idle.CleanupInterval.
func ExampleConnectionManager_TrimOpenConns() {
	m, err := peerlink.New(peerlink.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer m.Close()
	n, err := m.TrimOpenConns(context.Background())
	fmt.Println(n, err, m.EvictIdle(), m.EvictUnhealthy())
	// Output: 0 <nil> 0 0
}

// exampleID returns a fixed peer ID.
func exampleID(b byte) peer.ID {
	id, err := peer.IdentityFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize)))
	if err != nil {
		panic(err)
	}
	return id.ID()
}
