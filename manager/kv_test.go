//go:build linux

package manager_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-mp/mp/manager"
)

// TestConnectNatsNeedsCluster: this test binary does not import package
// cluster, so "nats" has no backend: Connect says what to import.
func TestConnectNatsNeedsCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := manager.Connect(ctx, "nats", "nats://127.0.0.1:4222", nil)
	if !errors.Is(err, manager.ErrNoBackend) || !strings.Contains(err.Error(), "github.com/go-mp/mp/cluster") {
		t.Fatalf("Connect nats without package cluster: %v, want ErrNoBackend naming the package", err)
	}
}
