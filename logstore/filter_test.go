package logstore

import (
	"errors"
	"testing"
)

var filterLines = []string{
	0: `START RequestId: 8f5e Version: $LATEST`,
	1: `2026-12-01T10:00:00.000Z	8f5e	ERROR	connection refused`,
	2: `2026-12-01T10:00:00.100Z	8f5e	WARN	retrying in 100 ms`,
	3: `{"level":"error","latency":250,"status":500,"user":{"id":"u-1","tags":["a","b"]},"ok":false,"trace":null}`,
	4: `{"level":"info","latency":12.5,"status":200,"user":{"id":"u-2"},"ok":true}`,
	5: `2026-12-01T10:00:01.000Z	9a1b	INFO	{"level":"warn","latency":99,"status":429}`,
	6: `REPORT RequestId: 8f5e	Duration: 12.00 ms	Billed Duration: 12 ms`,
	7: `user said "hello world" twice`,
	8: `[error] disk 95% full`,
}

func TestFilterTable(t *testing.T) {
	cases := []struct {
		pattern string
		want    []int
	}{
		{``, []int{0, 1, 2, 3, 4, 5, 6, 7, 8}},
		{`ERROR`, []int{1}},
		{`error`, []int{3, 8}},
		{`ERROR refused`, []int{1}},
		{`ERROR accepted`, nil},
		{`"connection refused"`, []int{1}},
		{`"hello world"`, []int{7}},
		{`"said \"hello"`, []int{7}},
		{`?ERROR ?WARN`, []int{1, 2}},
		{`8f5e -ERROR`, []int{0, 2, 6}},
		{`8f5e ?ERROR ?WARN -refused`, []int{2}},
		{`-RequestId`, []int{1, 2, 3, 4, 5, 7, 8}},
		{`%ERR(OR)?\s+conn%`, []int{1}},
		{`%^\[error\]%`, []int{8}},
		{`?%^START% ?%^REPORT%`, []int{0, 6}},
		{`{ $.level = "error" }`, []int{3}},
		{`{ $.level = error }`, []int{3}},
		{`{ $.level = "err*" }`, []int{3}},
		{`{ $.level != "error" }`, []int{4, 5}},
		{`{ $.latency > 100 }`, []int{3}},
		{`{ $.latency >= 99 && $.latency < 100 }`, []int{5}},
		{`{ $.latency <= 12.5 }`, []int{4}},
		{`{ $.latency > 100 && $.status = 500 }`, []int{3}},
		{`{ $.status = 200 || $.status = 429 }`, []int{4, 5}},
		{`{ ($.status = 200 || $.status = 500) && $.ok IS FALSE }`, []int{3}},
		{`{ $.ok IS TRUE }`, []int{4}},
		{`{ $.trace IS NULL }`, []int{3}},
		{`{ $.trace NOT EXISTS }`, []int{4, 5}},
		{`{ $.trace EXISTS }`, []int{3}},
		{`{ $.user.id = "u-2" }`, []int{4}},
		{`{ $.user.tags[1] = "b" }`, []int{3}},
		{`{ $.user.tags[2] = "b" }`, nil},
		{`{ $.level = %^(warn|info)$% }`, []int{4, 5}},
		{`{ $.latency = 250 }`, []int{3}},
		{`{ $.level > 3 }`, nil},
	}
	for _, c := range cases {
		f, err := ParseFilter(c.pattern)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", c.pattern, err)
			continue
		}
		var got []int
		for i, l := range filterLines {
			if f.Match(l) {
				got = append(got, i)
			}
		}
		if !equalInts(got, c.want) {
			t.Errorf("%q matched lines %v, want %v", c.pattern, got, c.want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFilterErrors(t *testing.T) {
	cases := []struct {
		pattern string
		pos     int
	}{
		{`"unterminated`, 1},
		{`ok "fine" "bad`, 11},
		{`{ $.a = 1`, 10},
		{`{ $.a = }`, 9},
		{`{ level = 1 }`, 3},
		{`{ $.a ~ 1 }`, 7},
		{`{ $.a > "x" }`, 12},
		{`{ $.a > abc }`, 9},
		{`{ $.a = 1 } extra`, 13},
		{`{ $.a IS MAYBE }`, 10},
		{`{ $.a NOT THERE }`, 11},
		{`{ ($.a = 1 }`, 12},
		{`%[%`, 1},
		{`%open`, 1},
		{`? x`, 2},
		{`{ $. = 1 }`, 5},
		{`{ $.a[x] = 1 }`, 7},
		{`a{b`, 2},
	}
	for _, c := range cases {
		_, err := ParseFilter(c.pattern)
		var fe *FilterError
		if !errors.As(err, &fe) {
			t.Errorf("ParseFilter(%q) = %v, want a FilterError", c.pattern, err)
			continue
		}
		if fe.Pos != c.pos {
			t.Errorf("ParseFilter(%q): position %d (%v), want %d", c.pattern, fe.Pos, err, c.pos)
		}
	}
}

// FuzzParseFilter: any pattern either fails with a FilterError whose
// position is inside (or just past) the pattern, or compiles to a filter
// that can be matched against any line without panicking.
func FuzzParseFilter(f *testing.F) {
	for _, p := range []string{``, `ERROR`, `?a ?b -c`, `"q \" x"`, `%a+b%`, `{ $.a = "x" && ($.b > 1 || $.c IS NULL) }`,
		`{ $.a[0].b NOT EXISTS }`, `{ $.x = %y% }`, `{ ((((`, `{ $.a = "x*y" }`} {
		f.Add(p, `{"a":"x","b":2,"c":null}`)
	}
	f.Fuzz(func(t *testing.T, pattern, line string) {
		flt, err := ParseFilter(pattern)
		if err != nil {
			var fe *FilterError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FilterError", err)
			}
			if fe.Pos < 1 || fe.Pos > len(pattern)+1 {
				t.Fatalf("position %d outside a pattern of %d bytes", fe.Pos, len(pattern))
			}
			return
		}
		flt.Match(line)
		for _, l := range filterLines {
			flt.Match(l)
		}
	})
}
