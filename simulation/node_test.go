package simulation

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestNodeConfigErrors(t *testing.T) {
	id, err := NodeIdentity(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	good := fmt.Sprintf(`{"node":0,"nodes":2,"seed":1,"listen":"127.0.0.1:0","start":"2026-01-01T00:00:00Z","duration":"5s","peers":[{"node":1,"id":%q,"addrs":["127.0.0.1:4001"],"dial":true}]}`, id.ID())
	if _, err := ParseNodeConfig([]byte(good)); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, c := range []struct{ edit, with, field string }{
		{`"node":0`, `"node":2`, "node "},
		{`"nodes":2`, `"nodes":1`, "nodes "},
		{`"listen":"127.0.0.1:0"`, `"listen":"nowhere"`, "listen "},
		{`"duration":"5s"`, `"duration":"-1s"`, "duration "},
		{`"start":"2026-01-01T00:00:00Z",`, ``, "start "},
		{`"addrs":["127.0.0.1:4001"]`, `"addrs":["127.0.0.1"]`, "peers[0].addrs[0] "},
		{`"addrs":["127.0.0.1:4001"]`, `"addrs":[]`, "peers[0].addrs "},
		{`"node":1,`, `"node":0,`, "peers[0].node "},
		{`"seed":1`, `"seed":1,"limit_exempt":["loopback"]`, "limit_exempt[0] "},
		{`"seed":1`, `"seed":1,"max_events":-1`, "max_events "},
		{`"seed":1`, `"seed":1,"metrics":"9100"`, "metrics "},
		{`"seed":1`, `"seed":1,"workload":{"gossip":{"rate":-1}}`, "workload.Gossip.Rate "},
		{`"seed":1`, `"seed":1,"workload":{"flood":{"nodes":[1]}}`, "workload.flood "},
		{`"seed":1`, `"seed":1,"colour":"red"`, `"colour"`},
	} {
		bad := strings.Replace(good, c.edit, c.with, 1)
		_, err := ParseNodeConfig([]byte(bad))
		if !errors.Is(err, ErrNodeConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want ErrNodeConfig naming %s", c.with, err, c.field)
		}
	}
}

func TestCauseErrRoundTrip(t *testing.T) {
	for _, c := range []string{"", "timeout", "no_candidate", "stream_limit", "reset", "closed", "other"} {
		if got := errorCause(causeErr(c)); got != c {
			t.Errorf("errorCause(causeErr(%q)) = %q", c, got)
		}
	}
}
