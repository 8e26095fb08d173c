package peerlink_test

import (
	"bufio"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerlink/peerlink"
)

// Serve the manager's metrics on /metrics. In a node this is
//
//	http.Handle("/metrics", m.MetricsHandler())
//	go http.ListenAndServe("127.0.0.1:9100", nil)
//
// here one scrape goes through httptest.
func ExampleConnectionManager_MetricsHandler() {
	cfg := peerlink.DefaultConfig()
	cfg.ListenAddrs = []string{"127.0.0.1:0"}
	m, err := peerlink.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	rec := httptest.NewRecorder()
	m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "peerlink_peers ") || strings.HasPrefix(line, "peerlink_connections{") {
			fmt.Println(line)
		}
	}
	// Output:
	// peerlink_connections{direction="inbound"} 0
	// peerlink_connections{direction="outbound"} 0
	// peerlink_peers 0
}

// Register the collector into your own registry, next to your other
// metrics, instead of serving a registry of its own.
func ExampleConnectionManager_PrometheusCollector() {
	cfg := peerlink.DefaultConfig()
	cfg.ListenAddrs = []string{"127.0.0.1:0"}
	m, err := peerlink.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer with promhttp.Handler()
	reg.MustRegister(m.PrometheusCollector())
	fams, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range fams[:3] {
		fmt.Println(f.GetName(), f.GetType())
	}
	// Output:
	// peerlink_bytes_received_total COUNTER
	// peerlink_bytes_sent_total COUNTER
	// peerlink_circuit_transitions_total COUNTER
}
