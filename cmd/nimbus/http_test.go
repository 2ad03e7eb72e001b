package main

import "testing"

func TestHTTPListenAddr(t *testing.T) {
	t.Parallel()
	cases := []struct {
		flag string
		dev  bool
		bind string
		want string
	}{
		{"", true, "127.0.0.1:8700", "127.0.0.1:9000"},
		{"", false, "10.0.0.5:8700", "10.0.0.5:9000"},
		{"", false, "[fd00::5]:8700", "[fd00::5]:9000"},
		{"127.0.0.1:9100", true, "127.0.0.1:8700", "127.0.0.1:9100"},
		{"0.0.0.0:80", false, "10.0.0.5:8700", "0.0.0.0:80"},
		{"off", true, "127.0.0.1:8700", ""},
	}
	for _, c := range cases {
		got, err := httpListenAddr(c.flag, c.dev, c.bind)
		if err != nil || got != c.want {
			t.Errorf("httpListenAddr(%q, %v, %q) = %q, %v; want %q", c.flag, c.dev, c.bind, got, err, c.want)
		}
	}
	if _, err := httpListenAddr("9000", true, "127.0.0.1:8700"); err == nil {
		t.Error("a port without a host was accepted")
	}
}
