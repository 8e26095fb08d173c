package warming

import "testing"

// TestTransitionTable checks every state against every event: the pairs
// in the table change the state, all others leave it alone.
func TestTransitionTable(t *testing.T) {
	type key struct {
		s State
		e Event
	}
	want := map[key]State{
		{Cold, Start}:      Warming,
		{Failed, Start}:    Warming,
		{Warming, Succeed}: Warm,
		{Warming, Fail}:    Failed,
		{Warming, Abort}:   Cold,
		{Warm, LinkLost}:   Cold,
	}
	for _, s := range []State{Cold, Warming, Warm, Failed} {
		for _, e := range []Event{Start, Succeed, Fail, Abort, LinkLost} {
			got, changed := Next(s, e)
			to, ok := want[key{s, e}]
			if !ok {
				to = s
			}
			if got != to || changed != ok {
				t.Errorf("Next(%v, %v) = %v, %v; want %v, %v", s, e, got, changed, to, ok)
			}
		}
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Cold.String(), "cold"},
		{Warming.String(), "warming"},
		{Warm.String(), "warm"},
		{Failed.String(), "failed"},
		{State(9).String(), "state(9)"},
		{Start.String(), "start"},
		{LinkLost.String(), "link lost"},
		{Event(0).String(), "event(0)"},
		{Kept.String(), "kept"},
		{Extra.String(), "extra"},
		{None.String(), "none"},
		{Role(7).String(), "role(7)"},
		{Transition{Cold, Warming}.String(), "cold → warming"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
