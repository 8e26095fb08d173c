package mux

import (
	"errors"
	"strings"
	"testing"
)

func TestPriority(t *testing.T) {
	for p, name := range []string{"low", "normal", "high", "critical"} {
		pr := Priority(p)
		if pr.String() != name || !pr.Valid() {
			t.Errorf("%d: %q valid=%v", p, pr.String(), pr.Valid())
		}
		for _, s := range []string{name, strings.ToUpper(name), string(rune('0' + p))} {
			if got, err := ParsePriority(s); err != nil || got != pr {
				t.Errorf("ParsePriority(%q) = %v, %v", s, got, err)
			}
		}
	}
	if Priority(7).String() != "priority(7)" || Priority(4).Valid() {
		t.Error("invalid priority")
	}
	if _, err := ParsePriority("urgent"); !errors.Is(err, ErrInvalidPriority) {
		t.Errorf("ParsePriority(urgent): %v", err)
	}
}

func TestValidateProtocol(t *testing.T) {
	ok := []string{"a", "/peerlink/ping/1.0.0", "~!@#$%^&*()", strings.Repeat("z", MaxProtocolLen)}
	for _, p := range ok {
		if err := ValidateProtocol(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	bad := map[string]string{
		"":                                    "empty",
		strings.Repeat("z", MaxProtocolLen+1): "129 bytes",
		"a b":                                 "space at offset 1",
		"ab\x00":                              "byte 0x00 at offset 2",
		"é":                                   "byte 0xc3 at offset 0",
		"a\x7f":                               "byte 0x7f at offset 1",
	}
	for p, want := range bad {
		err := ValidateProtocol(p)
		if !errors.Is(err, ErrInvalidProtocol) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want it to say %q", p, err, want)
		}
	}
}

func TestResetError(t *testing.T) {
	cases := []struct {
		e    *ResetError
		is   error
		text string
	}{
		{&ResetError{Code: ResetProtocolNotSupported, Remote: true, Protocol: "p"}, ErrProtocolNotSupported, `mux: stream "p" reset by remote: protocol not supported`},
		{&ResetError{Code: ResetStreamLimit, Remote: true}, ErrStreamLimit, "mux: stream reset by remote: stream limit"},
		{&ResetError{Code: ResetMalformedHeader, Remote: true}, ErrMalformedHeader, "mux: stream reset by remote: malformed header"},
		{&ResetError{Code: ResetApplication}, nil, "mux: stream reset locally"},
		{&ResetError{Code: 99, Remote: true}, nil, "mux: stream reset by remote: reset code 99"},
	}
	for _, c := range cases {
		if !errors.Is(c.e, ErrStreamReset) {
			t.Errorf("%v is not ErrStreamReset", c.e)
		}
		if c.is != nil && !errors.Is(c.e, c.is) {
			t.Errorf("%v is not %v", c.e, c.is)
		}
		if c.e.Error() != c.text {
			t.Errorf("%q, want %q", c.e.Error(), c.text)
		}
	}
	if errors.Is(&ResetError{Code: ResetApplication, Remote: true}, ErrProtocolNotSupported) {
		t.Error("application reset matches ErrProtocolNotSupported")
	}
}
