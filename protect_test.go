package peerlink_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/clock"
	"github.com/peerlink/peerlink/peer"
	"github.com/peerlink/peerlink/trim"
)

func someID(t testing.TB) peer.ID {
	t.Helper()
	id, err := peer.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id.ID()
}

func TestProtectByTags(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	m := newManager(t, func(c *peerlink.Config) { c.Clock = fake; c.ListenAddrs = nil })
	id, tagged := someID(t), someID(t)
	if err := m.TagPeer(tagged, "mesh", 1000); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"validator", "validator", "sentry"} {
		if err := m.Protect(id, tag); err != nil {
			t.Fatal(err)
		}
	}
	if !m.IsProtected(id, "") || !m.IsProtected(id, "sentry") || m.IsProtected(id, "other") {
		t.Fatal("IsProtected is wrong")
	}
	info, ok := m.TagInfo(id)
	if !ok || !slices.Equal(info.Protected, []string{"sentry", "validator"}) {
		t.Fatalf("TagInfo = %+v, %v", info, ok)
	}
	// A protected peer's record outlives the retention period; a record
	// with tags alone does not.
	fake.Advance(2 * peerlink.DefaultRecordRetention)
	m.PruneRecords()
	if _, ok := m.TagInfo(id); !ok || m.KnownPeers() != 1 {
		t.Fatalf("%d records left, want the protected one's alone", m.KnownPeers())
	}
	if !m.Unprotect(id, "validator") {
		t.Fatal("Unprotect(validator) reports no protection left; sentry still holds")
	}
	if m.Unprotect(id, "sentry") || m.IsProtected(id, "") {
		t.Fatal("still protected with no tag left")
	}
	if m.Unprotect(someID(t), "x") {
		t.Fatal("Unprotect of an unknown peer reports protection")
	}
	if m.PruneRecords(); m.KnownPeers() != 0 {
		t.Fatal("an unprotected record past retention was kept")
	}
}

func TestTagErrors(t *testing.T) {
	m := newManager(t, func(c *peerlink.Config) { c.ListenAddrs = nil })
	id := someID(t)
	for name, err := range map[string]error{
		"zero ID":    m.Protect(peer.ID{}, "x"),
		"self":       m.TagPeer(m.ID(), "x", 1),
		"empty tag":  m.Protect(id, ""),
		"long tag":   m.TagPeer(id, strings.Repeat("x", peerlink.MaxTagLen+1), 1),
		"nil upsert": m.UpsertTag(id, "x", nil),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := m.Protect(peer.ID{}, "x"); !errors.Is(err, peerlink.ErrInvalidPeer) {
		t.Errorf("zero ID: %v, want ErrInvalidPeer", err)
	}
	if err := m.Protect(id, ""); !errors.Is(err, peerlink.ErrInvalidTag) {
		t.Errorf("empty tag: %v, want ErrInvalidTag", err)
	}
	// At most MaxTagsPerPeer protections and tags, together.
	for i := range peerlink.MaxTagsPerPeer / 2 {
		if err := m.Protect(id, fmt.Sprint("p", i)); err != nil {
			t.Fatal(err)
		}
		if err := m.TagPeer(id, fmt.Sprint("t", i), i); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.TagPeer(id, "one-more", 1); !errors.Is(err, peerlink.ErrTooManyTags) {
		t.Fatalf("tag past MaxTagsPerPeer: %v, want ErrTooManyTags", err)
	}
	if err := m.Protect(id, "one-more"); !errors.Is(err, peerlink.ErrTooManyTags) {
		t.Fatalf("protection past MaxTagsPerPeer: %v, want ErrTooManyTags", err)
	}
	// Setting a tag it has is no new entry.
	if err := m.TagPeer(id, "t0", 7); err != nil {
		t.Fatalf("updating a tag at the bound: %v", err)
	}
	if err := m.Protect(id, "p0"); err != nil {
		t.Fatalf("protecting again with a tag at the bound: %v", err)
	}
	m.UntagPeer(id, "t0")
	if err := m.TagPeer(id, "one-more", 1); err != nil {
		t.Fatalf("a tag once one was removed: %v", err)
	}
}

func TestTagPeerUpsertUntag(t *testing.T) {
	m := newManager(t, func(c *peerlink.Config) { c.ListenAddrs = nil })
	id := someID(t)
	if err := m.TagPeer(id, "mesh", 20); err != nil {
		t.Fatal(err)
	}
	if err := m.TagPeer(id, "bad-blocks", -50); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := m.UpsertTag(id, "deliveries", func(v int) int { return v + 5 }); err != nil {
			t.Fatal(err)
		}
	}
	info, _ := m.TagInfo(id)
	if want := map[string]int{"mesh": 20, "bad-blocks": -50, "deliveries": 15}; !maps.Equal(info.Tags, want) || info.Value != -15 {
		t.Fatalf("TagInfo = %+v, want tags %v summing to -15", info, want)
	}
	if want := trim.Priority(m.QualityScore(id), -15); info.Priority != want {
		t.Fatalf("Priority = %v, want %v (100 × score + tags)", info.Priority, want)
	}
	m.UntagPeer(id, "bad-blocks")
	m.UntagPeer(id, "never-set")
	if info, _ := m.TagInfo(id); info.Value != 35 {
		t.Fatalf("after UntagPeer: %+v", info)
	}
	if _, ok := m.TagInfo(someID(t)); ok {
		t.Fatal("TagInfo of an unknown peer")
	}
}

// TestDecayingTags: values fall with the manager's clock, computed when
// read; bumps follow the tag's rule; a closed tag counts nowhere.
func TestDecayingTags(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_000_000, 0))
	m := newManager(t, func(c *peerlink.Config) {
		c.Clock = fake
		c.ListenAddrs = nil
		c.RecordRetention = 24 * time.Hour // these peers never connect
	})
	// go-libp2p-pubsub's first-delivery tag.
	tag, err := m.RegisterDecayingTag("first-delivery", 10*time.Minute, trim.DecayFixed(1), trim.BumpSumBounded(0, 15))
	if err != nil {
		t.Fatal(err)
	}
	if tag.Name() != "first-delivery" || tag.Interval() != 10*time.Minute {
		t.Fatal("Name or Interval wrong")
	}
	if _, err := m.RegisterDecayingTag("first-delivery", time.Second, trim.DecayNone(), trim.BumpOverwrite()); !errors.Is(err, peerlink.ErrInvalidTag) {
		t.Fatalf("registering a name twice: %v", err)
	}
	if _, err := m.RegisterDecayingTag("x", 0, trim.DecayNone(), trim.BumpOverwrite()); !errors.Is(err, peerlink.ErrInvalidTag) || !strings.Contains(err.Error(), "Interval") {
		t.Fatalf("zero interval: %v", err)
	}
	if err := m.TagPeer(someID(t), "first-delivery", 3); !errors.Is(err, peerlink.ErrInvalidTag) {
		t.Fatalf("TagPeer with a decaying tag's name: %v", err)
	}
	a, b := someID(t), someID(t)
	for range 20 {
		if err := tag.Bump(a, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := tag.Bump(b, 4); err != nil {
		t.Fatal(err)
	}
	value := func(id peer.ID) int { info, _ := m.TagInfo(id); return info.Value }
	if value(a) != 15 || value(b) != 4 {
		t.Fatalf("values %d, %d; want 15 (bounded), 4", value(a), value(b))
	}
	fake.Advance(35 * time.Minute)
	if value(a) != 12 || value(b) != 1 {
		t.Fatalf("after 35 min: %d, %d; want 12, 1", value(a), value(b))
	}
	fake.Advance(10 * time.Minute) // b decays to 0 and is dropped
	if info, _ := m.TagInfo(b); info.Value != 0 || len(info.Tags) != 0 {
		t.Fatalf("b after decaying away: %+v", info)
	}
	tag.Remove(a)
	if value(a) != 0 {
		t.Fatal("Remove left a value")
	}
	if err := tag.Bump(a, 2); err != nil {
		t.Fatal(err)
	}
	tag.Close()
	if value(a) != 0 {
		t.Fatal("a closed tag still counts")
	}
	if err := tag.Bump(a, 1); !errors.Is(err, peerlink.ErrInvalidTag) {
		t.Fatalf("Bump after Close: %v", err)
	}
	again, err := m.RegisterDecayingTag("first-delivery", time.Minute, trim.DecayLinear(0.5), trim.BumpSumUnbounded())
	if err != nil {
		t.Fatalf("registering a closed tag's name: %v", err)
	}
	if err := again.Bump(a, 8); err != nil || value(a) != 8 {
		t.Fatalf("new tag: %v, value %d", err, value(a))
	}
}

// TestProtectionAndTagsSurviveLinkReplacement: they live in the record,
// so a peer that comes back on a new link is as protected and tagged as
// before.
func TestProtectionAndTagsSurviveLinkReplacement(t *testing.T) {
	a, b := newManager(t), newManager(t)
	sub := a.Subscribe(16)
	connect(t, b, a)
	first := waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	if err := a.Protect(b.ID(), "keep"); err != nil {
		t.Fatal(err)
	}
	if err := a.TagPeer(b.ID(), "mesh", 20); err != nil {
		t.Fatal(err)
	}
	if err := b.Disconnect(a.ID()); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventDisconnected })
	connect(t, b, a)
	second := waitEvent(t, sub, func(e peerlink.Event) bool { return e.Type == peerlink.EventConnected })
	if second.Link == first.Link {
		t.Fatal("no new link")
	}
	info, _ := a.TagInfo(b.ID())
	if !a.IsProtected(b.ID(), "keep") || info.Tags["mesh"] != 20 {
		t.Fatalf("after the new link: protected %v, tags %+v", a.IsProtected(b.ID(), "keep"), info)
	}
	if n, _ := a.TrimOpenConns(ctxT(t)); n != 0 {
		t.Fatal("trimmed a protected peer")
	}
}
