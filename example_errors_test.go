//go:build linux

package mp_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-mp/mp"
)

// ErrOutOfStock is a sentinel error that a child's target returns.
var ErrOutOfStock = errors.New("shop: out of stock")

// PriceError is a typed error: its exported fields travel.
type PriceError struct {
	Item  string
	Cents int
}

func (e *PriceError) Error() string { return fmt.Sprintf("%s costs %d cents", e.Item, e.Cents) }

// Registered at package level, so that the children register them too.
func init() {
	mp.RegisterError("example.ErrOutOfStock", ErrOutOfStock)
	mp.RegisterErrorType[*PriceError]()
}

var buy = mp.Register("example.buy", func(item string) (int, error) {
	switch item {
	case "umbrella":
		return 0, fmt.Errorf("buy %s: %w", item, ErrOutOfStock)
	case "boat":
		return 0, fmt.Errorf("buy %s: %w", item, &PriceError{Item: item, Cents: 500000})
	}
	return 1, nil
})

// A sentinel error returned in a child matches in the parent with
// errors.Is, as it did in the child.
func ExampleRegisterError() {
	ctx := context.Background()
	p := mp.NewProcess(buy, "umbrella")
	if err := p.Start(); err != nil {
		panic(err)
	}
	err := p.Join(ctx)
	p.Close()
	fmt.Println(errors.Is(err, ErrOutOfStock))
	fmt.Println(err.(*mp.RemoteError).Message)
	// Output:
	// true
	// buy umbrella: shop: out of stock
}

// A typed error returned in a pool worker is rebuilt in the parent, where
// errors.As finds it with its exported fields.
func ExampleRegisterErrorType() {
	ctx := context.Background()
	pool, err := mp.NewPool(mp.PoolOptions{Processes: 1})
	if err != nil {
		panic(err)
	}
	defer func() {
		pool.Close()
		pool.Join(ctx)
	}()
	_, err = buy.Apply(ctx, pool, "boat")
	var pe *PriceError
	if errors.As(err, &pe) {
		fmt.Println(pe.Item, pe.Cents)
	}
	// Output: boat 500000
}
