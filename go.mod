module github.com/peerlink/peerlink

go 1.25

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/hashicorp/yamux v0.1.2
	github.com/rs/zerolog v1.35.1
	github.com/sony/gobreaker/v2 v2.4.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	golang.org/x/sys v0.29.0 // indirect
)
