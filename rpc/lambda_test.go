package rpc

import "testing"

func TestARNScope(t *testing.T) {
	for _, c := range []struct {
		region, account string
		ok              bool
	}{
		{"", "", true}, {"local", "000000000000", true}, {"us-east-1", "123456789012", true},
		{"eu-central-2", "", true}, {"us-gov-west-1", "", true},
		{"Mars", "", false}, {"us-east", "", false}, {"us-east-1/x", "", false},
		{"", "12345678901", false}, {"", "1234567890123", false}, {"", "12345678901a", false},
	} {
		_, err := NewARNScope(c.region, c.account)
		if (err == nil) != c.ok {
			t.Errorf("NewARNScope(%q, %q): %v, want ok %v", c.region, c.account, err, c.ok)
		}
	}
	s, err := NewARNScope("eu-west-1", "123456789012")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]string{
		{s.Function("f", ""), "arn:aws:lambda:eu-west-1:123456789012:function:f"},
		{s.Function("f", "live"), "arn:aws:lambda:eu-west-1:123456789012:function:f:live"},
		{s.Queue("q"), "arn:aws:sqs:eu-west-1:123456789012:q"},
		{s.Layer("l", 0), "arn:aws:lambda:eu-west-1:123456789012:layer:l"},
		{s.Layer("l", 3), "arn:aws:lambda:eu-west-1:123456789012:layer:l:3"},
		{s.AWSRegion(), "eu-west-1"},
		{ARNScope{}.Function("f", ""), "arn:aws:lambda:local:000000000000:function:f"},
	} {
		if got, want := c[0], c[1]; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	// What the scope builds, the parsers read back.
	if ref, err := ParseFunctionRef(s.Function("f", "2"), ""); err != nil || ref.Name != "f" || ref.Qualifier != "2" {
		t.Errorf("ParseFunctionRef(%s) = %+v, %v", s.Function("f", "2"), ref, err)
	}
	if name, version, ok := ParseLayerRef(s.Layer("l", 3)); !ok || name != "l" || version != 3 {
		t.Errorf("ParseLayerRef(%s) = %s %d %v", s.Layer("l", 3), name, version, ok)
	}
}
