package node

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"nimbus/bundle"
	"nimbus/gateway"
	"nimbus/rpc"
)

// buildURLHello builds examples/urlhello (an aws-lambda-go
// events.LambdaFunctionURLRequest handler) and returns its zip.
func buildURLHello(t testing.TB) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "urlhello")
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "bootstrap"), "../examples/urlhello")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build examples/urlhello: %v\n%s", err, out)
	}
	z, err := bundle.ZipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// curlResult is one curl call: the status, the headers (lower-cased
// names) and the body.
type curlResult struct {
	status  string
	headers map[string][]string
	body    string
}

func curl(t *testing.T, args ...string) curlResult {
	t.Helper()
	hdrFile := filepath.Join(t.TempDir(), "headers")
	cmd := exec.CommandContext(ctxT(t), "/usr/bin/curl", append([]string{"-sS", "-D", hdrFile, "-o", "-", "--max-time", "60"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	raw, _ := os.ReadFile(hdrFile)
	res := curlResult{headers: map[string][]string{}, body: string(out)}
	for i, line := range strings.Split(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n") {
		if i == 0 {
			if f := strings.Fields(line); len(f) > 1 {
				res.status = f[1]
			}
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			k = strings.ToLower(strings.TrimSpace(k))
			res.headers[k] = append(res.headers[k], strings.TrimSpace(v))
		}
	}
	return res
}

func (r curlResult) header(name string) string {
	if v := r.headers[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// TestFunctionURLCurl serves an aws-lambda-go function behind function
// URLs and calls them with curl: path-based and host-based (--url-domain),
// the payload format 2.0 event as the handler decodes it, Lambda's reading
// of the response, CORS preflight, a bearer token on an alias's URL, and
// the bad input (an unknown URL, a body over 6 MB, a missing or wrong
// token).
// startHTTPNode starts a dev node that serves the REST API and function
// URLs (under domain, when set) on a loopback port of its own.
func startHTTPNode(t testing.TB, domain string) (*Node, *rpc.Client) {
	t.Helper()
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	if err := linkTree(sharedImage, filepath.Join(dataDir, "images")); err != nil {
		t.Fatal(err)
	}
	return startNodeConfig(t, Config{DataDir: dataDir, HTTPListener: hln, URLDomain: domain})
}

func TestFunctionURLCurl(t *testing.T) {
	requireTool(t, "/usr/bin/curl", "--version")
	requireRoot(t)
	zip := buildURLHello(t)
	n, cl := startHTTPNode(t, "urls.test")
	ctx := ctxT(t)
	create(t, cl, "web", zip, nil)
	if _, err := cl.PublishVersion(ctx, &rpc.PublishVersionRequest{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateAlias(ctx, &rpc.CreateAliasRequest{FunctionName: "web", Name: "live", FunctionVersion: "1"}); err != nil {
		t.Fatal(err)
	}
	open, err := cl.CreateURL(ctx, &rpc.CreateURLRequest{FunctionName: "web",
		Cors: &rpc.Cors{AllowOrigins: []string{"https://app.example"}, AllowMethods: []string{"GET", "POST"}, AllowHeaders: []string{"content-type"}, MaxAge: 600}})
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(n.HTTPAddr())
	id := open.Config.ID
	if want := "http://" + id + ".urls.test:" + port + "/"; open.URL != want {
		t.Fatalf("URL = %q, want %q", open.URL, want)
	}
	pathBased := "http://" + n.HTTPAddr() + gateway.URLPathPrefix + id

	// Path-based: the event as the handler saw it, the response as sent.
	res := curl(t, "-X", "POST", pathBased+"/orders/7?a=1&a=2&b=x", "-H", "Cookie: c=1; d=2", "-H", "Content-Type: text/plain",
		"-A", "curl-test", "--data-binary", "hello there")
	var echo struct {
		Method, Path, Body, UserAgent, Version string
		Query                                  map[string]string
		Cookies                                []string
	}
	if err := json.Unmarshal([]byte(res.body), &echo); err != nil || res.status != "200" {
		t.Fatalf("POST %s: %s %q (%v)", pathBased, res.status, res.body, err)
	}
	if echo.Method != "POST" || echo.Path != "/orders/7" || echo.Body != "hello there" || echo.UserAgent != "curl-test" ||
		echo.Query["a"] != "1,2" || echo.Query["b"] != "x" || strings.Join(echo.Cookies, ";") != "c=1;d=2" || echo.Version != "$LATEST" {
		t.Errorf("the handler saw %+v", echo)
	}
	if res.header("X-Echo") != "yes" || res.header("Set-Cookie") != "seen=1; Path=/" || res.header("Content-Type") != "application/json" {
		t.Errorf("response headers %v", res.headers)
	}
	// Binary bodies arrive base64-encoded and are decoded by the handler.
	res = curl(t, "-X", "PUT", pathBased+"/bin", "-H", "Content-Type: application/octet-stream", "--data-binary", "\x01\x02raw")
	if !strings.Contains(res.body, `"body":"\u0001\u0002raw"`) {
		t.Errorf("binary body: %s %s", res.status, res.body)
	}
	// Host-based, and a status of the function's own.
	res = curl(t, "--resolve", id+".urls.test:"+port+":127.0.0.1", open.URL+"teapot")
	if res.status != "418" || res.body != "short and stout" || res.header("Content-Type") != "text/plain" {
		t.Errorf("host-based teapot: %s %q %v", res.status, res.body, res.headers)
	}
	// CORS: a preflight is answered without the function; a real request
	// from an allowed origin gets Access-Control-Allow-Origin.
	res = curl(t, "-X", "OPTIONS", pathBased+"/orders", "-H", "Origin: https://app.example", "-H", "Access-Control-Request-Method: POST")
	if res.status != "200" || res.header("Access-Control-Allow-Origin") != "https://app.example" || res.header("Access-Control-Allow-Methods") != "GET,POST" ||
		res.header("Access-Control-Max-Age") != "600" || res.body != "" {
		t.Errorf("preflight: %s %q %v", res.status, res.body, res.headers)
	}
	res = curl(t, "-X", "OPTIONS", pathBased+"/orders", "-H", "Origin: https://evil.example", "-H", "Access-Control-Request-Method: POST")
	if res.header("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin allowed: %v", res.headers)
	}
	if res = curl(t, pathBased+"/x", "-H", "Origin: https://app.example"); res.header("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("GET from an allowed origin: %v", res.headers)
	}

	// A bearer token on the alias's URL.
	tok, err := cl.CreateURL(ctx, &rpc.CreateURLRequest{FunctionName: "web", Qualifier: "live", AuthType: rpc.URLAuthToken})
	if err != nil || tok.Config.Token == "" {
		t.Fatalf("create a TOKEN URL: %+v, %v", tok, err)
	}
	tokURL := "http://" + n.HTTPAddr() + gateway.URLPathPrefix + tok.Config.ID + "/"
	if res = curl(t, tokURL); res.status != "403" {
		t.Errorf("no token: %s %s", res.status, res.body)
	}
	if res = curl(t, tokURL, "-H", "Authorization: Bearer "+strings.Repeat("0", len(tok.Config.Token))); res.status != "403" {
		t.Errorf("wrong token: %s %s", res.status, res.body)
	}
	if res = curl(t, tokURL, "-H", "Authorization: Bearer "+tok.Config.Token); res.status != "200" || !strings.Contains(res.body, `"version":"1"`) {
		t.Errorf("with the token: %s %s", res.status, res.body)
	}
	if got, err := cl.GetURL(ctx, &rpc.GetURLRequest{FunctionName: "web", Qualifier: "live"}); err != nil || got.Config.Token != "" {
		t.Errorf("GetURL shows the token: %+v, %v", got, err)
	}

	// Bad input.
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, make([]byte, rpc.MaxSyncPayload+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if res = curl(t, "-X", "POST", pathBased+"/", "--data-binary", "@"+big); res.status != "413" {
		t.Errorf("a body over 6 MB: %s %s", res.status, res.body)
	}
	if res = curl(t, "http://"+n.HTTPAddr()+gateway.URLPathPrefix+strings.Repeat("0", 32)+"/"); res.status != "404" {
		t.Errorf("an unknown URL: %s %s", res.status, res.body)
	}
	if _, err := cl.CreateURL(ctx, &rpc.CreateURLRequest{FunctionName: "web", Qualifier: "1"}); !errors.Is(err, rpc.ErrInvalidParameterValue) {
		t.Errorf("a URL on a version: %v", err)
	}
	// Deleting the function deletes its URLs.
	if _, err := cl.DeleteFunction(ctx, &rpc.GetFunctionRequest{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if res = curl(t, pathBased+"/"); res.status != "404" {
		t.Errorf("the URL of a deleted function: %s %s", res.status, res.body)
	}
}
