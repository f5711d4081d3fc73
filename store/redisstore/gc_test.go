package redisstore

import (
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sessiond/sessiond/internal/testenv"
	"github.com/sessiond/sessiond/session"
)

// cachedSessions stores n sessions shaped as sessiond makes them in a
// Redis of its own, resolves each once through st's client-side cache, and
// returns st and their token hashes.
func cachedSessions(b *testing.B, n int) (*Store, []session.Hash) {
	b.Helper()
	srv := testenv.StartRedis(b)
	st := openTest(b, "redis://"+srv.Addr())
	hashes := make([]session.Hash, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				s := newSession("u_" + randID())
				s.CreatedUserAgent, s.LastUserAgent = chromeUA, chromeUA
				if _, err := st.Create(ctx, s, session.Limit{}); err != nil {
					b.Error(err)
					return
				}
				if _, err := st.ByHash(ctx, s.TokenHash); err != nil {
					b.Error(err)
					return
				}
				hashes[i] = s.TokenHash
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return st, hashes
}

// gcCPU returns the CPU time the garbage collector has spent, in seconds.
func gcCPU() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64()
}

// BenchmarkCache100k resolves 100,000 sessions shaped as sessiond makes
// them once each, which fills the client-side cache with their token
// pointers and records, then measures:
//
//   - GC: what the cache costs the garbage collector: ns/op is the time of
//     a full collection, gc-cpu-ms/op its CPU time, heap-objects the
//     objects live on the heap with the cache full;
//   - ByHash: resolving tokens picked at random, from 32 goroutines per
//     CPU, with the default cache mode; gc-cpu-ms/op is the collector's
//     CPU time per lookup.
func BenchmarkCache100k(b *testing.B) {
	st, hashes := cachedSessions(b, 100_000)
	b.Run("GC", func(b *testing.B) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		cpu := gcCPU()
		for b.Loop() {
			runtime.GC()
		}
		b.ReportMetric((gcCPU()-cpu)*1e3/float64(b.N), "gc-cpu-ms/op")
		b.ReportMetric(float64(ms.HeapObjects), "heap-objects")
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
	})
	b.Run("ByHash", func(b *testing.B) {
		runtime.GC()
		cpu := gcCPU()
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			for pb.Next() {
				if _, err := st.ByHash(ctx, hashes[r.IntN(len(hashes))]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric((gcCPU()-cpu)*1e3/float64(b.N), "gc-cpu-ms/op")
	})
}
