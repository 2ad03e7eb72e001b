package node

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"nimbus/gateway"
	"nimbus/rpc"
)

// The function URL round trip beside a bare net/http handler on the same
// machine (docs/BENCHMARKS.md):
//
//	go test ./node/ -run '^$' -bench 'FunctionURL|BareHTTP' -benchtime 3000x -count 3
//
// Both use one keep-alive HTTP/1.1 connection over loopback and GET the
// same path; the function is examples/urlhello at 1792 MB (one vCPU, so no
// CPU quota in the numbers), the bare handler answers the same echo
// document. p50 and p99 are reported besides ns/op.

func reportLatencies(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}

func roundTrips(b *testing.B, client *http.Client, url string) {
	get := func() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("GET %s: %d", url, resp.StatusCode)
		}
	}
	for i := 0; i < 200; i++ { // warm: sandbox, connection
		get()
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		get()
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatencies(b, lat)
}

func BenchmarkFunctionURL(b *testing.B) {
	requireRoot(b)
	zip := buildURLHello(b)
	n, cl := startHTTPNode(b, "")
	create(b, cl, "web", zip, func(r *rpc.CreateFunctionRequest) { r.MemoryMB = 1792 })
	u, err := cl.CreateURL(ctxT(b), &rpc.CreateURLRequest{FunctionName: "web"})
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	roundTrips(b, client, "http://"+n.HTTPAddr()+gateway.URLPathPrefix+u.Config.ID+"/orders/7?a=1")
}

func BenchmarkBareHTTP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		cookies := make([]string, 0)
		for _, c := range r.Cookies() {
			cookies = append(cookies, c.String())
		}
		query := map[string]string{}
		for k, v := range r.URL.Query() {
			query[k] = strings.Join(v, ",")
		}
		out, _ := json.Marshal(map[string]any{"method": r.Method, "path": r.URL.Path, "query": query, "body": string(body),
			"cookies": cookies, "userAgent": r.UserAgent(), "version": "$LATEST"})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo", "yes")
		http.SetCookie(w, &http.Cookie{Name: "seen", Value: "1", Path: "/"})
		_, _ = w.Write(out)
	})}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { srv.Close() })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	roundTrips(b, client, "http://"+ln.Addr().String()+"/orders/7?a=1")
}
