package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

func TestStoreContextUnarmed(t *testing.T) {
	parent := context.WithValue(t.Context(), ctxKey{}, "v")
	d := time.Now().Add(time.Hour)
	ctx := withStoreDeadline(parent, d)
	defer ctx.stop()
	if got, ok := ctx.Deadline(); !ok || !got.Equal(d) {
		t.Errorf("Deadline() = %v, %v; want %v", got, ok, d)
	}
	if ctx.Err() != nil || ctx.Value(ctxKey{}) != "v" {
		t.Errorf("Err() = %v, Value = %v; want nil, the parent's", ctx.Err(), ctx.Value(ctxKey{}))
	}
	if ctx.timed.Load() != nil {
		t.Fatal("armed without a call to Done")
	}
}

func TestStoreContextExpires(t *testing.T) {
	ctx := withStoreDeadline(t.Context(), time.Now().Add(20*time.Millisecond))
	defer ctx.stop()
	child, cancel := context.WithCancel(ctx) // arms the deadline
	defer cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a context derived from it outlived the deadline")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Errorf("Err() = %v, child's %v; want the deadline exceeded", ctx.Err(), child.Err())
	}
}

func TestStoreContextPastDeadline(t *testing.T) {
	ctx := withStoreDeadline(t.Context(), time.Now().Add(-time.Second))
	defer ctx.stop()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("unarmed Err() past the deadline = %v", ctx.Err())
	}
	select {
	case <-ctx.Done():
	default:
		t.Error("Done() is open past the deadline")
	}
}

func TestStoreContextFollowsParent(t *testing.T) {
	parent, cancelParent := context.WithCancel(t.Context())
	ctx := withStoreDeadline(parent, time.Now().Add(time.Hour))
	defer ctx.stop()
	cancelParent()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("unarmed Err() after the parent's cancel = %v", ctx.Err())
	}
	<-ctx.Done() // closed: armed on a canceled parent

	early := time.Now().Add(time.Minute)
	short, cancel := context.WithDeadline(t.Context(), early)
	defer cancel()
	if got, _ := (&storeContext{parent: short, deadline: early.Add(time.Hour)}).Deadline(); !got.Equal(early) {
		t.Errorf("Deadline() = %v; want the parent's earlier %v", got, early)
	}
}

func TestStoreContextStop(t *testing.T) {
	ctx := withStoreDeadline(t.Context(), time.Now().Add(time.Hour))
	done := ctx.Done()
	ctx.stop()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not release the armed context")
	}
}
