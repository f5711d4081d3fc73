package pgusers

import (
	"slices"
	"sync"
	"testing"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/users/directorytest"
)

// TestAppendCommitOrder appends from many goroutines through two DBs while
// a reader keeps reading the newest events, and checks that no event ever
// appears behind what the reader has seen: each read that saw ID n saw
// every event below n that exists at the end. Otherwise a reader paging
// back with Before from the newest event could miss one for good.
func TestAppendCommitOrder(t *testing.T) {
	url := testenv.PostgresSchema(t)
	dbs := []*DB{openAt(t, url), openAt(t, url)}
	const writers, perWriter = 8, 40
	var (
		wg    sync.WaitGroup
		reads [][]int64
		done  = make(chan struct{})
	)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-done:
				return
			default:
			}
			got, err := dbs[1].Query(ctx, audit.Filter{Limit: 1000})
			if err != nil {
				t.Errorf("Query: %v", err)
				return
			}
			reads = append(reads, directorytest.IDs(got))
		}
	}()
	for i := range writers {
		db := dbs[i%2]
		wg.Go(func() {
			for range perWriter {
				if err := db.Append(ctx, directorytest.NewEvent("session.created", "u_a")); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	<-readerDone
	all := directorytest.IDs(directorytest.Query(t, dbs[0], audit.Filter{Limit: 1000}))
	if len(all) != writers*perWriter {
		t.Fatalf("got %d events, want %d", len(all), writers*perWriter)
	}
	for _, read := range reads {
		if len(read) == 0 {
			continue
		}
		newest := read[0]
		var want []int64
		for _, id := range all {
			if id <= newest {
				want = append(want, id)
			}
		}
		if !slices.Equal(read, want) {
			missing := 0
			for _, id := range want {
				if !slices.Contains(read, id) {
					missing++
				}
			}
			t.Fatalf("a read saw event %d but not %d older events that exist now: they committed after it", newest, missing)
		}
	}
	t.Logf("%d reads checked", len(reads))
}
