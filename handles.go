//go:build linux

package mp

import (
	"reflect"

	"golang.org/x/sys/unix"

	"github.com/go-mp/mp/internal/codec"
)

// handleCarrier is implemented by exactly the types of this package that
// may carry a descriptor, which travels beside a message (see
// codec.EncodeMessage): a message whose type cannot hold one skips the
// codec's handle session and its lock. Its method is unexported so that
// it is no part of these types' API, which is why package codec, which
// needs to know them, is given this interface rather than declaring it.
type handleCarrier interface{ carriesHandle() }

func init() { codec.SetHandleMarker(reflect.TypeFor[handleCarrier]()) }

func (*Conn) carriesHandle()         {}
func (*Lock) carriesHandle()         {}
func (*RLock) carriesHandle()        {}
func (*semaphore) carriesHandle()    {} // Semaphore and BoundedSemaphore embed it
func (*Event) carriesHandle()        {}
func (*Condition) carriesHandle()    {}
func (*Barrier) carriesHandle()      {}
func (*Queue[T]) carriesHandle()     {} // and JoinableQueue, which embeds it
func (*RawValue[T]) carriesHandle()  {}
func (*Value[T]) carriesHandle()     {}
func (*RawArray[T]) carriesHandle()  {}
func (*Array[T]) carriesHandle()     {}
func (*SharedMemory) carriesHandle() {}

// closeFD closes a descriptor this package owns; a failed close leaves
// nothing to do.
func closeFD(fd int) { unix.Close(fd) }
