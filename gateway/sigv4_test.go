package gateway

import (
	"errors"
	"strings"
	"testing"

	"nimbus/rpc"
)

const goodSig = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/us-east-1/lambda/aws4_request, " +
	"SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"

func TestParseAuthorization(t *testing.T) {
	t.Parallel()
	sig, err := ParseAuthorization([]string{goodSig})
	if err != nil {
		t.Fatal(err)
	}
	want := Signature{AccessKey: "AKIDEXAMPLE", Date: "20261201", Region: "us-east-1", Service: "lambda",
		SignedHeaders: []string{"content-type", "host", "x-amz-date"},
		Signature:     "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"}
	if sig.AccessKey != want.AccessKey || sig.Date != want.Date || sig.Region != want.Region || sig.Service != want.Service ||
		strings.Join(sig.SignedHeaders, ";") != strings.Join(want.SignedHeaders, ";") || sig.Signature != want.Signature {
		t.Errorf("parsed %+v, want %+v", sig, want)
	}
	if sig, err := ParseAuthorization(nil); sig != nil || err != nil {
		t.Errorf("no header: %v, %v; want an anonymous request", sig, err)
	}
	// The same without spaces after the commas (some signers write it so).
	if _, err := ParseAuthorization([]string{strings.ReplaceAll(goodSig, ", ", ",")}); err != nil {
		t.Errorf("compact form: %v", err)
	}
	bad := map[string]string{
		"basic":             "Basic dXNlcjpwYXNz",
		"no params":         "AWS4-HMAC-SHA256",
		"missing signature": "AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/lambda/aws4_request, SignedHeaders=host",
		"short signature":   strings.Replace(goodSig, "5d672d79", "5d67", 1),
		"upper hex":         strings.Replace(goodSig, "5d672d79", "5D672D79", 1),
		"bad scope":         strings.Replace(goodSig, "aws4_request", "aws5_request", 1),
		"bad date":          strings.Replace(goodSig, "20261201", "2026-12-1", 1),
		"scope parts":       strings.Replace(goodSig, "/lambda/", "/", 1),
		"unsorted headers":  strings.Replace(goodSig, "content-type;host", "host;content-type", 1),
		"no host":           strings.Replace(goodSig, "content-type;host;x-amz-date", "x-amz-date", 1),
		"upper header":      strings.Replace(goodSig, "content-type", "Content-Type", 1),
		"empty header":      strings.Replace(goodSig, "content-type;host", ";host", 1),
		"duplicate":         goodSig + ", Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
		"unknown param":     goodSig + ", Extra=1",
		"empty key":         strings.Replace(goodSig, "AKIDEXAMPLE", "", 1),
	}
	for name, h := range bad {
		if sig, err := ParseAuthorization([]string{h}); !errors.Is(err, &rpc.Error{Code: CodeIncompleteSignature}) {
			t.Errorf("%s: %q parsed as %+v, %v; want IncompleteSignatureException", name, h, sig, err)
		}
	}
	if _, err := ParseAuthorization([]string{goodSig, goodSig}); err == nil {
		t.Error("two Authorization headers accepted")
	}
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add(goodSig)
	f.Add(strings.ReplaceAll(goodSig, ", ", ","))
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/e")
	f.Add("AWS4-HMAC-SHA256 ,,,==,")
	f.Fuzz(func(t *testing.T, h string) {
		sig, err := ParseAuthorization([]string{h})
		if err != nil {
			if !errors.Is(err, &rpc.Error{Code: CodeIncompleteSignature}) {
				t.Fatalf("error %v is not IncompleteSignatureException", err)
			}
			return
		}
		if !isLowerHex(sig.Signature, 64) || len(sig.SignedHeaders) == 0 || sig.AccessKey == "" {
			t.Fatalf("accepted an incomplete signature: %+v", sig)
		}
	})
}
