package peerlink_test

import (
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/peerlink/peerlink"
	"github.com/peerlink/peerlink/peer"
)

// scrape serves one GET /metrics from h and parses the text exposition.
func scrape(t testing.TB, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return fams
}

// series returns the metric of family name whose labels are the given
// name=value pairs (all of them), failing if there is none.
func series(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric family %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for _, lp := range m.GetLabel() {
			found := false
			for i := 0; i < len(labels); i += 2 {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	t.Fatalf("%s: no series %v", name, labels)
	return nil
}

// value returns the counter or gauge value of a series.
func value(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := series(t, fams, name, labels...)
	switch fams[name].GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s is a %v", name, fams[name].GetType())
	return 0
}

// labelValues returns the values of label over the series of a family.
func labelValues(fams map[string]*dto.MetricFamily, name, label string) []string {
	var out []string
	for _, m := range fams[name].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				out = append(out, lp.GetValue())
			}
		}
	}
	return out
}

var promTypes = map[string]dto.MetricType{
	"peerlink_connections_opened_total":           dto.MetricType_COUNTER,
	"peerlink_connections_closed_total":           dto.MetricType_COUNTER,
	"peerlink_connections":                        dto.MetricType_GAUGE,
	"peerlink_peers":                              dto.MetricType_GAUGE,
	"peerlink_peer_records":                       dto.MetricType_GAUGE,
	"peerlink_dials_total":                        dto.MetricType_COUNTER,
	"peerlink_dials_in_flight":                    dto.MetricType_GAUGE,
	"peerlink_warming_peers":                      dto.MetricType_GAUGE,
	"peerlink_warming_attempts_total":             dto.MetricType_COUNTER,
	"peerlink_warming_failures_total":             dto.MetricType_COUNTER,
	"peerlink_dial_errors_total":                  dto.MetricType_COUNTER,
	"peerlink_handshake_latency_seconds":          dto.MetricType_HISTOGRAM,
	"peerlink_request_latency_seconds":            dto.MetricType_HISTOGRAM,
	"peerlink_request_errors_total":               dto.MetricType_COUNTER,
	"peerlink_streams":                            dto.MetricType_GAUGE,
	"peerlink_stream_refusals_total":              dto.MetricType_COUNTER,
	"peerlink_circuit_transitions_total":          dto.MetricType_COUNTER,
	"peerlink_health_checks_total":                dto.MetricType_COUNTER,
	"peerlink_health_check_failures_total":        dto.MetricType_COUNTER,
	"peerlink_write_queue_writes":                 dto.MetricType_GAUGE,
	"peerlink_write_queue_bytes":                  dto.MetricType_GAUGE,
	"peerlink_write_queue_utilization":            dto.MetricType_GAUGE,
	"peerlink_bytes_received_total":               dto.MetricType_COUNTER,
	"peerlink_bytes_sent_total":                   dto.MetricType_COUNTER,
	"peerlink_stream_memory_bytes":                dto.MetricType_GAUGE,
	"peerlink_stream_memory_limit_bytes":          dto.MetricType_GAUGE,
	"peerlink_listener_refusals_total":            dto.MetricType_COUNTER,
	"peerlink_listener_evictions_total":           dto.MetricType_COUNTER,
	"peerlink_listener_pending_handshakes":        dto.MetricType_GAUGE,
	"peerlink_listener_first_byte_timeouts_total": dto.MetricType_COUNTER,
	"peerlink_trims_total":                        dto.MetricType_COUNTER,
	"peerlink_high_water_refusals_total":          dto.MetricType_COUNTER,
}

// checkHistogram checks a latency histogram's shape: seconds, the
// bucket bounds from 100 µs to 10 s ascending, counts cumulative and at
// most the sample count.
func checkHistogram(t *testing.T, name string, h *dto.Histogram) {
	t.Helper()
	bs := h.GetBucket()
	n := len(bs)
	if n < 3 || bs[0].GetUpperBound() != 0.0001 || bs[n-2].GetUpperBound() != 10 || !math.IsInf(bs[n-1].GetUpperBound(), 1) {
		t.Fatalf("%s: buckets %v, want 0.0001 .. 10 s and +Inf", name, bs)
	}
	for i := 1; i < n; i++ {
		if bs[i].GetUpperBound() <= bs[i-1].GetUpperBound() || bs[i].GetCumulativeCount() < bs[i-1].GetCumulativeCount() {
			t.Fatalf("%s: buckets not ascending and cumulative at %d: %v", name, i, bs)
		}
	}
	if bs[n-1].GetCumulativeCount() != h.GetSampleCount() {
		t.Fatalf("%s: +Inf bucket %d, count %d", name, bs[n-1].GetCumulativeCount(), h.GetSampleCount())
	}
}

// bucket returns a histogram's cumulative count at upper bound le.
func bucket(t *testing.T, h *dto.Histogram, le float64) uint64 {
	t.Helper()
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == le {
			return b.GetCumulativeCount()
		}
	}
	t.Fatalf("no bucket le=%g", le)
	return 0
}

func TestPrometheusMetrics(t *testing.T) {
	a, b := statsScenario(t, 30*time.Millisecond, 60*time.Millisecond)

	fams := scrape(t, a.MetricsHandler())

	// Names, types and help: every family is ours and expected.
	for name, f := range fams {
		want, ok := promTypes[name]
		if !ok {
			t.Errorf("unexpected metric family %s", name)
			continue
		}
		if f.GetType() != want {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), want)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}
	for name := range promTypes {
		if fams[name] == nil {
			t.Errorf("metric family %s missing", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	eq := func(want float64, name string, labels ...string) {
		t.Helper()
		if got := value(t, fams, name, labels...); got != want {
			t.Errorf("%s%v = %g, want %g", name, labels, got, want)
		}
	}
	eq(2, "peerlink_connections_opened_total", "direction", "outbound")
	eq(0, "peerlink_connections_opened_total", "direction", "inbound")
	eq(1, "peerlink_connections_closed_total", "reason", "local")
	eq(0, "peerlink_connections_closed_total", "reason", "remote")
	eq(1, "peerlink_connections", "direction", "outbound")
	eq(0, "peerlink_connections", "direction", "inbound")
	eq(1, "peerlink_peers")
	eq(3, "peerlink_peer_records")
	eq(3, "peerlink_dials_total")
	eq(0, "peerlink_dials_in_flight")
	eq(1, "peerlink_dial_errors_total", "reason", peerlink.DialErrorRefused)
	eq(0, "peerlink_dial_errors_total", "reason", peerlink.DialErrorTimeout)
	eq(1, "peerlink_request_errors_total")
	eq(float64(peerlink.DefaultNodeMemoryBudget), "peerlink_stream_memory_limit_bytes")
	eq(0, "peerlink_stream_refusals_total", "cause", "limit")
	eq(0, "peerlink_stream_refusals_total", "cause", "memory")
	eq(0, "peerlink_listener_refusals_total", "cause", "busy")
	eq(0, "peerlink_listener_evictions_total", "kind", "slow")
	if v := value(t, fams, "peerlink_bytes_sent_total"); v == 0 {
		t.Error("no bytes sent")
	}
	if v := value(t, fams, "peerlink_bytes_received_total"); v == 0 {
		t.Error("no bytes received")
	}

	// Fixed label sets, one series each: no per-peer labels.
	for name, want := range map[string]string{
		"peerlink_dial_errors_total":         "timeout refused busy addr_limit identity circuit_open limit canceled other",
		"peerlink_connections_closed_total":  "local remote error replaced shutdown unhealthy trimmed idle",
		"peerlink_circuit_transitions_total": "closed half_open open",
		"peerlink_listener_refusals_total":   "busy addr_limit gater",
	} {
		var label string
		for _, lp := range fams[name].GetMetric()[0].GetLabel() {
			label = lp.GetName()
		}
		got := labelValues(fams, name, label)
		slices.Sort(got)
		wantSorted := strings.Fields(want)
		slices.Sort(wantSorted)
		if !slices.Equal(got, wantSorted) {
			t.Errorf("%s{%s}: %q, want %q", name, label, got, want)
		}
	}
	// Streams by direction and priority: one series for each pair.
	var pairs []string
	for _, m := range fams["peerlink_streams"].GetMetric() {
		var dir, prio string
		for _, lp := range m.GetLabel() {
			switch lp.GetName() {
			case "direction":
				dir = lp.GetValue()
			case "priority":
				prio = lp.GetValue()
			}
		}
		pairs = append(pairs, dir+"/"+prio)
	}
	slices.Sort(pairs)
	if want := []string{"inbound/critical", "inbound/high", "inbound/low", "inbound/normal",
		"outbound/critical", "outbound/high", "outbound/low", "outbound/normal"}; !slices.Equal(pairs, want) {
		t.Errorf("peerlink_streams series %q, want %q", pairs, want)
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "peer" {
					t.Errorf("%s has a peer label", name)
				}
			}
		}
	}

	// Histograms in seconds with real buckets.
	hs := series(t, fams, "peerlink_handshake_latency_seconds").GetHistogram()
	checkHistogram(t, "handshake", hs)
	if hs.GetSampleCount() != 2 || hs.GetSampleSum() <= 0 || hs.GetSampleSum() > 20 {
		t.Errorf("handshake: count %d sum %g s, want 2 handshakes", hs.GetSampleCount(), hs.GetSampleSum())
	}
	rq := series(t, fams, "peerlink_request_latency_seconds").GetHistogram()
	checkHistogram(t, "request", rq)
	if rq.GetSampleCount() != 2 || math.Abs(rq.GetSampleSum()-0.090) > 1e-9 {
		t.Errorf("request: count %d sum %g s, want 2 and 0.090", rq.GetSampleCount(), rq.GetSampleSum())
	}
	for _, c := range []struct {
		le   float64
		want uint64
	}{{0.01, 0}, {0.025, 0}, {0.05, 1}, {0.1, 2}, {10, 2}} {
		if got := bucket(t, rq, c.le); got != c.want {
			t.Errorf("request bucket le=%g: %d, want %d", c.le, got, c.want)
		}
	}

	// The other side saw one inbound link.
	fb := scrape(t, b.MetricsHandler())
	if v := value(t, fb, "peerlink_connections_opened_total", "direction", "inbound"); v != 1 {
		t.Errorf("b: inbound opened %g, want 1", v)
	}
	if v := value(t, fb, "peerlink_connections", "direction", "inbound"); v != 1 {
		t.Errorf("b: inbound open %g, want 1", v)
	}
}

// The collector registers into a caller's registry (pedantic: its
// Describe matches what it collects), with the opt-in bounded per-peer
// score gauge.
func TestPrometheusCollectorRegistry(t *testing.T) {
	a := newManager(t)
	var ids []peer.ID
	for range 3 {
		p := newManager(t)
		connect(t, a, p)
		ids = append(ids, p.ID())
	}
	a.RecordSuccess(ids[0], 5*time.Millisecond)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.PrometheusCollector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "peerlink_peer_quality_score" {
			t.Error("per-peer scores exported without being asked for")
		}
	}
	// Registering a second manager's collector into the same registry
	// collides: one registry per manager (or a wrapping registerer).
	if err := reg.Register(newManager(t).PrometheusCollector()); err == nil {
		t.Error("two managers' collectors registered into one registry")
	}

	reg2 := prometheus.NewPedanticRegistry()
	reg2.MustRegister(peerlink.NewPrometheusCollector(a, peerlink.PrometheusOptions{PeerScores: 1}))
	fams, err = reg2.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fams {
		if f.GetName() == "peerlink_peer_quality_score" {
			for _, m := range f.GetMetric() {
				got = append(got, m.GetLabel()[0].GetValue())
			}
		}
	}
	best := a.HealthyPeers()
	want := []string{best[0].Peer.String(), best[len(best)-1].Peer.String()}
	if len(got) != 2 || !(got[0] == want[0] && got[1] == want[1] || got[0] == want[1] && got[1] == want[0]) {
		t.Errorf("peer scores for %v, want the best and the worst %v", got, want)
	}
}

// Scrapes run concurrently with each other and with traffic.
func TestPrometheusConcurrentScrapes(t *testing.T) {
	a, b := newManager(t), newManager(t)
	withEcho(b, t)
	connect(t, a, b)
	h := a.MetricsHandler()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for range 10 {
				scrape(t, h)
			}
		})
	}
	for range 10 {
		roundTrip(t, a, b.ID(), []byte("ping"))
		a.RecordSuccess(b.ID(), time.Millisecond)
	}
	wg.Wait()
	fams := scrape(t, h)
	if n := series(t, fams, "peerlink_request_latency_seconds").GetHistogram().GetSampleCount(); n != 10 {
		t.Errorf("request count %d, want 10", n)
	}
}

// BenchmarkPrometheusScrape measures one scrape of a manager with 16
// links: the collector alone (Gather) and the whole handler (text
// exposition).
func BenchmarkPrometheusScrape(b *testing.B) {
	a := newManager(b)
	for range 16 {
		p := newManager(b)
		withEcho(p, b)
		connect(b, a, p)
		roundTrip(b, a, p.ID(), []byte("hello"))
		a.RecordSuccess(p.ID(), 20*time.Millisecond)
	}
	b.Run("gather", func(b *testing.B) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(a.PrometheusCollector())
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("handler", func(b *testing.B) {
		h := a.MetricsHandler()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
		}
	})
}
