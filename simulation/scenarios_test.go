package simulation

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The JSON files in scenarios/ are the Go values of Shipped, written by
// PEERLINK_SIM_WRITE_SCENARIOS=1 go test -run TestShippedMatchGo.
func TestShippedMatchGo(t *testing.T) {
	write := os.Getenv("PEERLINK_SIM_WRITE_SCENARIOS") != ""
	files := map[string]bool{}
	for name, sc := range Shipped() {
		f := filepath.Join("scenarios", name+".json")
		files[f] = true
		if write {
			b, err := json.MarshalIndent(sc, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f, append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("%s: %v (write it with PEERLINK_SIM_WRITE_SCENARIOS=1)", name, err)
		}
		got, err := ParseScenario(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if want := sc.withDefaults(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s decodes to\n%+v\nwant the Go value\n%+v", f, got, want)
		}
	}
	for f := range shipped(t) {
		if !files[f] {
			t.Errorf("%s is not in Shipped()", f)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}
