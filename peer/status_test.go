package peer

import "testing"

func TestStatusString(t *testing.T) {
	tests := []struct {
		s    Status
		want string
	}{
		{StatusDisconnected, "disconnected"},
		{StatusConnecting, "connecting"},
		{StatusConnected, "connected"},
		{StatusDisconnecting, "disconnecting"},
		{StatusDisconnecting + 1, "status(4)"},
		{255, "status(255)"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("Status(%d).String() = %q, want %q", uint8(tt.s), got, tt.want)
		}
	}
	var zero Status
	if zero != StatusDisconnected {
		t.Errorf("zero Status is %v, want disconnected", zero)
	}
}
