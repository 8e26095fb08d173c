package peer

import (
	"strings"
	"testing"
)

func TestAddrInfoValidate(t *testing.T) {
	id := randomIDs(1, 30)[0]
	tests := []struct {
		name string
		info AddrInfo
		want string // substring of the error; "" for valid
	}{
		{"one address", AddrInfo{ID: id, Addrs: []string{"127.0.0.1:4001"}}, ""},
		{"several addresses", AddrInfo{ID: id, Addrs: []string{"127.0.0.1:4001", "[::1]:4001", "mem-node-7"}}, ""},
		{"address unknown", AddrInfo{ID: id}, ""},
		{"zero ID", AddrInfo{Addrs: []string{"127.0.0.1:4001"}}, "zero ID"},
		{"zero value", AddrInfo{}, "zero ID"},
		{"empty address", AddrInfo{ID: id, Addrs: []string{"127.0.0.1:4001", ""}}, "address 1 is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.info.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestAddrInfoString(t *testing.T) {
	id := randomIDs(1, 31)[0]
	tests := []struct {
		info AddrInfo
		want string
	}{
		{AddrInfo{ID: id, Addrs: []string{"a:1", "b:2"}}, "{" + id.String() + ": [a:1 b:2]}"},
		{AddrInfo{ID: id}, "{" + id.String() + ": []}"},
		{AddrInfo{}, "{<zero ID>: []}"},
	}
	for _, tt := range tests {
		if got := tt.info.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
