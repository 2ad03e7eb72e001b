package main

import (
	"fmt"
	"net"
	"strconv"
)

// defaultHTTPPort is where a node serves Lambda's REST API unless
// --http-addr says otherwise.
const defaultHTTPPort = 9000

// httpListenAddr is the REST API's address: --http-addr when given ("off"
// serves none), else 127.0.0.1:9000 for a dev node and the --bind IP at
// port 9000 for a cluster node.
func httpListenAddr(flag string, dev bool, bind string) (string, error) {
	switch flag {
	case "off":
		return "", nil
	case "":
	default:
		if _, _, err := net.SplitHostPort(flag); err != nil {
			return "", fmt.Errorf("--http-addr %s: want IP:PORT or off: %w", flag, err)
		}
		return flag, nil
	}
	if dev {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(defaultHTTPPort)), nil
	}
	host, _, err := net.SplitHostPort(bind)
	if err != nil {
		return "", fmt.Errorf("--bind %s: %w", bind, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(defaultHTTPPort)), nil
}

// listenHTTP opens the REST API's listener (nil when it is off). The
// caller decides whether a busy default address is fatal.
func listenHTTP(flag string, dev bool, bind string) (net.Listener, error) {
	addr, err := httpListenAddr(flag, dev, bind)
	if err != nil || addr == "" {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listener (--http-addr): %w", err)
	}
	return ln, nil
}
