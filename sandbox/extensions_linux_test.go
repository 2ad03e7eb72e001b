package sandbox

import (
	"strings"
	"testing"
)

// aws-lambda-go's lambda.WithEnableSIGTERM registers its internal
// extension and gets SIGTERM before its sandbox is destroyed; an extension
// in the runtime's process gets an INVOKE event for each invocation and
// SHUTDOWN at the end, and its registration is answered with the
// function's name. The sandboxes are frozen when idle: the shutdown thaws
// them.
func TestExtensionsInASandbox(t *testing.T) {
	t.Parallel()
	m, sink := newTestManager(t, Config{})
	code := codeDir(t, gofnBin)

	sig := fnConfig("extsigterm", 1)
	sig.Env = map[string]string{"GOFN_EXTENSIONS": "sigterm"}
	invoke(t, m, sig, code, `{"do":"env"}`)

	evs := fnConfig("extevents", 1)
	evs.Env = map[string]string{"GOFN_EXTENSIONS": "events"}
	var ids []string
	for range 2 {
		ids = append(ids, invoke(t, m, evs, code, `{"do":"env"}`).RequestID)
	}

	m.Retire("extsigterm", 0)
	m.Retire("extevents", 0)
	waitFor(t, "aws-lambda-go's SIGTERM handler", func() bool {
		return strings.Contains(strings.Join(sink.lines("extsigterm"), "\n"), "aws-lambda-go SIGTERM handler ran")
	})
	waitFor(t, "the extension's SHUTDOWN", func() bool {
		return strings.Contains(strings.Join(sink.lines("extevents"), "\n"), "extension got SHUTDOWN spindown")
	})
	sigLines := strings.Join(sink.lines("extsigterm"), "\n")
	if strings.Contains(sigLines, "Failed to register internal extension") {
		t.Errorf("aws-lambda-go could not register its extension:\n%s", sigLines)
	}
	lines := strings.Join(sink.lines("extevents"), "\n")
	if !strings.Contains(lines, `extension registered: 200 {"functionName":"extevents","functionVersion":"$LATEST","handler":"bootstrap"}`) {
		t.Errorf("registration:\n%s", lines)
	}
	for _, id := range ids {
		if !strings.Contains(lines, "extension got INVOKE "+id) {
			t.Errorf("no INVOKE event for %s:\n%s", id, lines)
		}
	}
}
