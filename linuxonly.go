//go:build !linux

package mp

// mp runs only on Linux: it is built on futexes, memfd_create, SCM_RIGHTS
// and /proc/self/exe. Building it for another GOOS fails here on purpose,
// with the one error "undefined: mp_runs_only_on_Linux" (see README.md).
var _ = mp_runs_only_on_Linux
