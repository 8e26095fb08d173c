package peer

import "strconv"

// Status is where a peer's link stands. The zero value is
// StatusDisconnected, so a new table entry starts out disconnected.
type Status uint8

const (
	StatusDisconnected  Status = iota // no link and no dial in flight
	StatusConnecting                  // a dial (or an inbound handshake) is in flight
	StatusConnected                   // a link is established
	StatusDisconnecting               // the link is being closed
)

var statusNames = [...]string{
	StatusDisconnected:  "disconnected",
	StatusConnecting:    "connecting",
	StatusConnected:     "connected",
	StatusDisconnecting: "disconnecting",
}

// String returns the status in lower case, as in "connected"; a value
// outside the constants prints as "status(N)".
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}
