package gateway

import (
	"strings"

	"nimbus/rpc"
)

// sigV4Algorithm is the one signing algorithm the SDKs use with Lambda.
const sigV4Algorithm = "AWS4-HMAC-SHA256"

// maxSignedHeaders bounds the SignedHeaders list of one request.
const maxSignedHeaders = 64

// Signature is a parsed SigV4 Authorization header. Access control is off,
// so nothing verifies it yet; it is parsed so that a malformed header is
// refused now and the parts are at hand when verification comes.
type Signature struct {
	AccessKey     string
	Date          string // YYYYMMDD, from the credential scope
	Region        string
	Service       string
	SignedHeaders []string // lowercase, sorted
	Signature     string   // 64 lowercase hex digits
}

// ParseAuthorization parses the Authorization header values of a request.
// No header is an anonymous request (nil, nil); more than one, or one that
// is not a well-formed SigV4 header, is IncompleteSignatureException.
func ParseAuthorization(values []string) (*Signature, error) {
	switch len(values) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, badSignature("Authorization header must appear once.")
	}
	alg, rest, ok := strings.Cut(values[0], " ")
	if !ok || alg != sigV4Algorithm {
		return nil, badSignature("Authorization header requires the " + sigV4Algorithm + " algorithm.")
	}
	var sig Signature
	seen := map[string]bool{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || seen[k] {
			return nil, badSignature("Authorization header is malformed: '" + part + "'.")
		}
		seen[k] = true
		var err error
		switch k {
		case "Credential":
			err = sig.parseCredential(v)
		case "SignedHeaders":
			err = sig.parseSignedHeaders(v)
		case "Signature":
			if !isLowerHex(v, 64) {
				err = badSignature("Signature must be 64 lowercase hex digits.")
			}
			sig.Signature = v
		default:
			err = badSignature("Authorization header has an unknown parameter '" + k + "'.")
		}
		if err != nil {
			return nil, err
		}
	}
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if !seen[k] {
			return nil, badSignature("Authorization header requires '" + k + "' parameter.")
		}
	}
	return &sig, nil
}

func (s *Signature) parseCredential(v string) error {
	p := strings.Split(v, "/")
	if len(p) != 5 || p[4] != "aws4_request" {
		return badSignature("Credential should be scoped to a valid region, service and aws4_request terminator: '" + v + "'.")
	}
	if !isToken(p[0], 128, false) {
		return badSignature("Credential has a malformed access key.")
	}
	if len(p[1]) != 8 || !isDigits(p[1]) {
		return badSignature("Credential should be scoped to a date in the format yyyyMMdd: '" + p[1] + "'.")
	}
	if !isToken(p[2], 64, true) || !isToken(p[3], 64, true) {
		return badSignature("Credential should be scoped to a valid region and service: '" + v + "'.")
	}
	s.AccessKey, s.Date, s.Region, s.Service = p[0], p[1], p[2], p[3]
	return nil
}

func (s *Signature) parseSignedHeaders(v string) error {
	hs := strings.Split(v, ";")
	if len(hs) > maxSignedHeaders {
		return badSignature("SignedHeaders lists too many headers.")
	}
	host := false
	for i, h := range hs {
		if h == "" || h != strings.ToLower(h) || !isHeaderName(h) || (i > 0 && hs[i-1] >= h) {
			return badSignature("SignedHeaders must be lowercase header names, sorted, separated by ';': '" + v + "'.")
		}
		host = host || h == "host"
	}
	if !host {
		return badSignature("SignedHeaders must include host.")
	}
	s.SignedHeaders = hs
	return nil
}

func badSignature(msg string) error { return rpc.Errorf(CodeIncompleteSignature, "%s", msg) }

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isToken: 1..max of letters and digits (and '-' when dash).
func isToken(s string, max int, dash bool) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || dash && c == '-') {
			return false
		}
	}
	return true
}

// isHeaderName: an HTTP token (RFC 9110).
func isHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
