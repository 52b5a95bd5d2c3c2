//go:build linux

// Package freeport picks TCP ports for tests that must name their ports
// before they listen (a NATS cluster's routes list every node).
package freeport

import (
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Ports returns n ports that were free a moment ago on 127.0.0.1,
// chosen at random below the range from which the kernel gives ports to
// connections and to listeners on port 0 (ip_local_port_range): the many
// loopback connections of tests running meanwhile cannot take them.
func Ports(t testing.TB, n int) []int {
	t.Helper()
	low := 32768 // the kernel's default start of the range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		var l net.Listener
		var err error
		if low > 11000 && tries < 100 {
			if l, err = net.Listen("tcp", fmt.Sprint("127.0.0.1:", 10000+mathrand.IntN(low-11000))); err != nil {
				continue // taken: another
			}
		} else if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if p := l.Addr().(*net.TCPAddr).Port; !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}
