//go:build linux

package scenarios

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/go-mp/mp"
)

// A FloatChannel carries messages of up to 100 000 float64 through shared
// memory, one at a time: the sender waits for the buffer to be empty,
// fills it, sets the length and says it is full; the receiver waits for it
// to be full, reads it and says it is empty. A negative length ends the
// stream.
type FloatChannel struct {
	Buf   *mp.RawArray[float64]
	Len   *mp.Value[int64]
	Empty *mp.Semaphore // 1 while the sender may fill the buffer
	Full  *mp.Semaphore // 1 while the receiver may read it
}

const floatChannelCap = 100000

// NewFloatChannel returns an empty FloatChannel.
func NewFloatChannel() (*FloatChannel, error) {
	buf, err := mp.NewRawArray[float64](floatChannelCap)
	if err != nil {
		return nil, err
	}
	n, err := mp.NewValue[int64](0)
	if err != nil {
		buf.Close()
		return nil, err
	}
	empty, err := mp.NewSemaphore(1)
	if err == nil {
		var full *mp.Semaphore
		if full, err = mp.NewSemaphore(0); err == nil {
			return &FloatChannel{Buf: buf, Len: n, Empty: empty, Full: full}, nil
		}
	}
	buf.Close()
	n.Close()
	return nil, err
}

// Send copies msg into the buffer once it is empty.
func (c *FloatChannel) Send(ctx context.Context, msg []float64) error {
	if err := c.Empty.Acquire(ctx); err != nil {
		return err
	}
	if err := c.Buf.CopyFrom(msg); err != nil {
		c.Empty.Release()
		return err
	}
	if err := c.Len.Set(ctx, int64(len(msg))); err != nil {
		return err
	}
	return c.Full.Release()
}

// CloseSend ends the stream: the receiver's Recv returns ok false.
func (c *FloatChannel) CloseSend(ctx context.Context) error {
	if err := c.Empty.Acquire(ctx); err != nil {
		return err
	}
	if err := c.Len.Set(ctx, -1); err != nil {
		return err
	}
	return c.Full.Release()
}

// Recv waits for a message and calls read with it, in place in shared
// memory (read must not keep it), then frees the buffer. It returns false
// at the end of the stream.
func (c *FloatChannel) Recv(ctx context.Context, read func([]float64)) (ok bool, err error) {
	if err := c.Full.Acquire(ctx); err != nil {
		return false, err
	}
	n, err := c.Len.Get(ctx)
	if err != nil {
		return false, err
	}
	if n < 0 {
		return false, nil
	}
	read(c.Buf.Slice()[:n])
	return true, c.Empty.Release()
}

// Close releases the channel's memory in this process.
func (c *FloatChannel) Close() {
	c.Buf.Close()
	c.Len.Close()
}

// floatMessage is message m of the stream: its length varies from 1 to
// 10 000 and element j is m + j/1024, so that every sum over it is exact.
func floatMessage(buf []float64, m int) []float64 {
	n := 1 + (m*7919)%10000
	buf = buf[:n]
	for j := range buf {
		buf[j] = float64(m) + float64(j)/1024
	}
	return buf
}

// floatMessageSum is the sum of the elements of a message of n elements
// numbered m, computed without it.
func floatMessageSum(m, n int) float64 {
	return float64(n*m) + float64(n*(n-1)/2)/1024
}

// floatReport is what the receiver tells the parent at the end.
type floatReport struct {
	Messages int
	Floats   int
	Bad      int // messages whose contents were not what was sent
	Checksum float64
}

type floatArgs struct {
	Channel *FloatChannel
	Out     *mp.Conn
}

// floatReceiver reads messages until the end of the stream, checks each
// and reports totals.
var floatReceiver = mp.RegisterProc("scenarios.floatReceiver", func(a floatArgs) error {
	defer a.Out.Close()
	defer a.Channel.Close()
	var rep floatReport
	for {
		ok, err := a.Channel.Recv(context.Background(), func(msg []float64) {
			sum := 0.0
			for _, x := range msg {
				sum += x
			}
			if msg[0] != float64(rep.Messages) || sum != floatMessageSum(rep.Messages, len(msg)) {
				rep.Bad++
			}
			rep.Messages++
			rep.Floats += len(msg)
			rep.Checksum += sum
		})
		if err != nil {
			return err
		}
		if !ok {
			return a.Out.Send(rep)
		}
	}
})

// FloatChannelScenario sends 1000 messages of floats to a child through a
// FloatChannel: a RawArray of 100 000 float64, a length Value and two
// semaphores. The child checks each message and reports totals; the
// checksum is exact, so it is the same on every run:
//
//	sent 1000 messages
//	the receiver got 1000 messages, 4991500 floats, none damaged
//	checksum 2509161988.28125 (as sent)
func FloatChannelScenario(ctx context.Context, w io.Writer) error {
	const messages = 1000
	ch, err := NewFloatChannel()
	if err != nil {
		return err
	}
	defer ch.Close()
	r, out, err := mp.Pipe(false)
	if err != nil {
		return err
	}
	defer r.Close()
	p := mp.NewProcess(floatReceiver, floatArgs{Channel: ch, Out: out})
	err = p.Start()
	out.Close()
	if err != nil {
		return err
	}
	defer cleanup(p)

	buf := make([]float64, floatChannelCap)
	floats, checksum := 0, 0.0
	for m := range messages {
		msg := floatMessage(buf, m)
		if err := ch.Send(ctx, msg); err != nil {
			return err
		}
		floats += len(msg)
		checksum += floatMessageSum(m, len(msg))
	}
	if err := ch.CloseSend(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "sent %d messages\n", messages)

	var rep floatReport
	if err := r.Recv(&rep); err != nil {
		return fmt.Errorf("report of the receiver: %w", err)
	}
	if err := p.Join(ctx); err != nil {
		return err
	}
	damaged := "none damaged"
	if rep.Bad > 0 {
		damaged = fmt.Sprintf("%d damaged", rep.Bad)
	}
	fmt.Fprintf(w, "the receiver got %d messages, %d floats, %s\n", rep.Messages, rep.Floats, damaged)
	same := "as sent"
	if rep.Checksum != checksum || rep.Floats != floats {
		same = fmt.Sprintf("sent %d floats, checksum %s", floats, strconv.FormatFloat(checksum, 'f', -1, 64))
	}
	fmt.Fprintf(w, "checksum %s (%s)\n", strconv.FormatFloat(rep.Checksum, 'f', -1, 64), same)
	return nil
}
