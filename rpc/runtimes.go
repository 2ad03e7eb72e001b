package rpc

// Lambda's runtime identifiers, defined once. A runtime is `provided` (the
// code's own bootstrap speaks the Runtime API, on the default image) or a
// managed runtime (an interpreter and a shim of the platform's, on an image
// built from Debian packages by `nimbus image build`). The sandbox package
// holds each one's recipe; these are only the names.
const (
	RuntimeProvided       = "provided"
	RuntimeProvidedAL2    = "provided.al2"
	RuntimeProvidedAL2023 = "provided.al2023"
	RuntimePython313      = "python3.13"
	RuntimeNodejs20       = "nodejs20.x"
	RuntimeJava21         = "java21"
	RuntimeRuby33         = "ruby3.3"
)

// Runtimes lists every runtime a function may name, in the order Lambda's
// messages list them.
var Runtimes = []string{
	RuntimeNodejs20, RuntimePython313, RuntimeJava21, RuntimeRuby33,
	RuntimeProvided, RuntimeProvidedAL2, RuntimeProvidedAL2023,
}

// IsProvidedRuntime reports whether runtime is a custom runtime (the code
// holds a bootstrap, and no image build is needed).
func IsProvidedRuntime(runtime string) bool {
	return runtime == RuntimeProvided || runtime == RuntimeProvidedAL2 || runtime == RuntimeProvidedAL2023
}

// IsRuntime reports whether runtime is one of Runtimes.
func IsRuntime(runtime string) bool {
	for _, r := range Runtimes {
		if r == runtime {
			return true
		}
	}
	return false
}

// ManagedRuntimes are the runtimes that run on a built image.
var ManagedRuntimes = []string{RuntimePython313, RuntimeNodejs20, RuntimeJava21, RuntimeRuby33}
