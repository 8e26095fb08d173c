package peerstore_test

import (
	"math"
	"testing"
	"time"

	"github.com/peerlink/peerlink/peerstore"
)

const ms = time.Millisecond

// sample is one ObserveRTT call at t0+at.
type sample struct {
	rtt, at time.Duration
}

func TestHistoryRTT(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     *peerstore.HistoryConfig
		samples []sample
		snapAt  time.Duration
		want    peerstore.RTTStats // LastObserved is checked apart
	}{
		{"none", nil, nil, 0, peerstore.RTTStats{}},
		{"one", nil, []sample{{100 * ms, 0}}, 0,
			peerstore.RTTStats{EWMA: 100 * ms, Peak: 100 * ms, Min: 100 * ms, Last: 100 * ms, Samples: 1}},
		// The first sample has lost half its weight: (100·½ + 200) / 1½.
		{"one half-life apart", nil, []sample{{100 * ms, 0}, {200 * ms, 10 * time.Second}}, 10 * time.Second,
			peerstore.RTTStats{EWMA: 166666667, Peak: 200 * ms, Min: 100 * ms, Last: 200 * ms, Samples: 2}},
		{"configured half-life", &peerstore.HistoryConfig{RTTHalfLife: time.Second}, []sample{{100 * ms, 0}, {200 * ms, time.Second}}, time.Second,
			peerstore.RTTStats{EWMA: 166666667, Peak: 200 * ms, Min: 100 * ms, Last: 200 * ms, Samples: 2}},
		{"zero field means default", &peerstore.HistoryConfig{ErrorHalfLife: time.Second}, []sample{{100 * ms, 0}, {200 * ms, 10 * time.Second}}, 10 * time.Second,
			peerstore.RTTStats{EWMA: 166666667, Peak: 200 * ms, Min: 100 * ms, Last: 200 * ms, Samples: 2}},
		// Samples at one instant count alike, whatever their order.
		{"same instant", nil, []sample{{100 * ms, 0}, {200 * ms, 0}, {300 * ms, 0}}, 0,
			peerstore.RTTStats{EWMA: 200 * ms, Peak: 300 * ms, Min: 100 * ms, Last: 300 * ms, Samples: 3}},
		{"long gap forgets", nil, []sample{{100 * ms, 0}, {300 * ms, 20 * time.Minute}}, 20 * time.Minute,
			peerstore.RTTStats{EWMA: 300 * ms, Peak: 300 * ms, Min: 100 * ms, Last: 300 * ms, Samples: 2}},
		// Peak jumps to 500 ms; one half-life later it has closed half
		// its distance to the mean.
		{"peak decays between samples", nil, []sample{{100 * ms, 0}, {500 * ms, 0}}, 10 * time.Second,
			peerstore.RTTStats{EWMA: 300 * ms, Peak: 400 * ms, Min: 100 * ms, Last: 500 * ms, Samples: 2}},
		// A sample under the peak: mean (500·½ + 100)/1½ = 233⅓ ms;
		// peak 233⅓ + (500 − 233⅓)·½ = 366⅔ ms.
		{"peak decays toward the mean on a lower sample", nil, []sample{{500 * ms, 0}, {100 * ms, 10 * time.Second}}, 10 * time.Second,
			peerstore.RTTStats{EWMA: 233333333, Peak: 366666667, Min: 100 * ms, Last: 100 * ms, Samples: 2}},
		{"negative ignored", nil, []sample{{100 * ms, 0}, {-ms, time.Second}}, 0,
			peerstore.RTTStats{EWMA: 100 * ms, Peak: 100 * ms, Min: 100 * ms, Last: 100 * ms, Samples: 1}},
		{"zero is a sample", nil, []sample{{100 * ms, 0}, {0, 0}}, 0,
			peerstore.RTTStats{EWMA: 50 * ms, Peak: 100 * ms, Min: 0, Last: 0, Samples: 2}},
		// A clock stepping back counts as no time passing.
		{"clock steps back", nil, []sample{{100 * ms, time.Minute}, {200 * ms, 0}}, time.Minute,
			peerstore.RTTStats{EWMA: 150 * ms, Peak: 200 * ms, Min: 100 * ms, Last: 200 * ms, Samples: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h peerstore.History
			h.Init(tc.cfg)
			for _, s := range tc.samples {
				h.ObserveRTT(s.rtt, at(s.at))
			}
			got := h.Snapshot(at(tc.snapAt)).RTT
			observed := got.LastObserved
			got.LastObserved = time.Time{}
			if got != tc.want {
				t.Errorf("RTT = %+v\nwant  %+v", got, tc.want)
			}
			var wantObserved time.Time
			for _, s := range tc.samples {
				if s.rtt >= 0 && at(s.at).After(wantObserved) {
					wantObserved = at(s.at)
				}
			}
			if !observed.Equal(wantObserved) {
				t.Errorf("LastObserved = %v, want %v", observed, wantObserved)
			}
		})
	}
}

// TestHistoryRTTTracksStep feeds a steady RTT that then doubles, sampled
// once a second, and checks the mean has gone half way one half-life
// after the step.
func TestHistoryRTTTracksStep(t *testing.T) {
	var h peerstore.History
	now := t0
	for range 120 {
		h.ObserveRTT(100*ms, now)
		now = now.Add(time.Second)
	}
	for range 10 {
		h.ObserveRTT(200*ms, now)
		now = now.Add(time.Second)
	}
	// The last sample was 1 s ago: ten 200 ms samples spanning 9 s.
	ewma := h.Snapshot(now.Add(-time.Second)).RTT.EWMA
	if ewma < 140*ms || ewma > 160*ms {
		t.Errorf("EWMA = %v one half-life after a step from 100 to 200 ms, want about 150 ms", ewma)
	}
}

func TestHistoryErrorRate(t *testing.T) {
	var h peerstore.History
	if got := h.Snapshot(t0); got.ErrorRate != 0 || got.Errors != 0 || !got.LastError.IsZero() {
		t.Fatalf("fresh History has errors: %+v", got)
	}
	h.RecordError(t0)
	for _, tc := range []struct {
		at   time.Duration
		want float64
	}{
		{0, 1},
		{10 * time.Minute, 0.5},
		{30 * time.Minute, 0.125},
	} {
		if got := h.Snapshot(at(tc.at)).ErrorRate; math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("ErrorRate at +%v = %v, want %v", tc.at, got, tc.want)
		}
	}
	h.RecordError(at(10 * time.Minute))
	s := h.Snapshot(at(20 * time.Minute))
	if math.Abs(s.ErrorRate-0.75) > 1e-9 || s.Errors != 2 || !s.LastError.Equal(at(10*time.Minute)) {
		t.Errorf("after a second error: rate %v, errors %d, last %v; want 0.75, 2, +10m", s.ErrorRate, s.Errors, s.LastError)
	}

	var fast peerstore.History
	fast.Init(&peerstore.HistoryConfig{ErrorHalfLife: time.Second})
	fast.RecordError(t0)
	if got := fast.Snapshot(at(2 * time.Second)).ErrorRate; math.Abs(got-0.25) > 1e-9 {
		t.Errorf("ErrorRate with a 1 s half-life after 2 s = %v, want 0.25", got)
	}
}

func TestHistorySuccesses(t *testing.T) {
	var h peerstore.History
	h.RecordSuccess(at(time.Second))
	h.RecordSuccess(at(2 * time.Second))
	s := h.Snapshot(at(time.Minute))
	if s.Successes != 2 || !s.LastSuccess.Equal(at(2*time.Second)) || s.Errors != 0 {
		t.Errorf("Successes %d, LastSuccess %v, Errors %d", s.Successes, s.LastSuccess, s.Errors)
	}
}

func TestHistoryLinks(t *testing.T) {
	var h peerstore.History
	h.LinkOpened(t0)
	s := h.Snapshot(at(5 * time.Second))
	if !s.Connected || s.Links != 1 || s.Reconnects != 0 || s.ConnectedFor != 5*time.Second || !s.LastConnected.Equal(t0) {
		t.Fatalf("one open link: %+v", s)
	}
	h.LinkClosed(at(10*time.Second), 100, 200, 3)
	h.LinkOpened(at(20 * time.Second))
	s = h.Snapshot(at(25 * time.Second))
	want := peerstore.HistorySnapshot{
		Links: 2, Reconnects: 1, Connected: true,
		ConnectedFor:  15 * time.Second, // 10 s, then 5 s of the current link
		LastConnected: at(20 * time.Second), LastDisconnected: at(10 * time.Second),
		BytesIn: 100, BytesOut: 200, Streams: 3,
	}
	if !equalLinks(s, want) {
		t.Errorf("after a reconnect:\n got %+v\nwant %+v", s, want)
	}
	h.LinkClosed(at(30*time.Second), 1, 2, 4)
	s = h.Snapshot(at(time.Hour))
	want = peerstore.HistorySnapshot{
		Links: 2, Reconnects: 1, ConnectedFor: 20 * time.Second,
		LastConnected: at(20 * time.Second), LastDisconnected: at(30 * time.Second),
		BytesIn: 101, BytesOut: 202, Streams: 7,
	}
	if !equalLinks(s, want) {
		t.Errorf("after both closed:\n got %+v\nwant %+v", s, want)
	}
}

// TestHistoryLinkReplacement: a replacing link opens before the old one
// closes; the peer stays connected throughout.
func TestHistoryLinkReplacement(t *testing.T) {
	var h peerstore.History
	h.LinkOpened(t0)
	h.LinkOpened(at(5 * time.Second))
	h.LinkClosed(at(6*time.Second), 10, 10, 1)
	s := h.Snapshot(at(8 * time.Second))
	if !s.Connected || !s.LastDisconnected.IsZero() || s.ConnectedFor != 8*time.Second || s.Reconnects != 1 {
		t.Errorf("mid-replacement: %+v", s)
	}
	h.LinkClosed(at(10*time.Second), 5, 5, 1)
	s = h.Snapshot(at(time.Minute))
	if s.Connected || s.ConnectedFor != 10*time.Second || !s.LastDisconnected.Equal(at(10*time.Second)) || s.BytesIn != 15 || s.Streams != 2 {
		t.Errorf("after replacement closed: %+v", s)
	}
}

func TestHistoryUnpairedClose(t *testing.T) {
	var h peerstore.History
	h.LinkClosed(t0, 7, 8, 9)
	s := h.Snapshot(t0)
	if s.Connected || s.ConnectedFor != 0 || s.BytesIn != 7 || s.BytesOut != 8 || s.Streams != 9 {
		t.Errorf("after an unpaired close: %+v", s)
	}
}

func TestHistoryInitDiscards(t *testing.T) {
	var h peerstore.History
	h.ObserveRTT(ms, t0)
	h.RecordError(t0)
	h.LinkOpened(t0)
	h.Init(nil)
	if s := h.Snapshot(t0); s != (peerstore.HistorySnapshot{}) {
		t.Errorf("Init kept %+v", s)
	}
}

func TestHistoryObserveRTTAllocs(t *testing.T) {
	var h peerstore.History
	now := t0
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Second)
		h.ObserveRTT(20*ms, now)
	})
	if allocs != 0 {
		t.Errorf("ObserveRTT allocates %v times", allocs)
	}
}

func equalLinks(x, y peerstore.HistorySnapshot) bool {
	return x.Links == y.Links && x.Reconnects == y.Reconnects && x.Connected == y.Connected &&
		x.ConnectedFor == y.ConnectedFor && x.LastConnected.Equal(y.LastConnected) &&
		x.LastDisconnected.Equal(y.LastDisconnected) && x.BytesIn == y.BytesIn &&
		x.BytesOut == y.BytesOut && x.Streams == y.Streams
}
