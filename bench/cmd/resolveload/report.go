package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// report prints the runs as Markdown: every run, then per case the
// medians over the rounds, with throughput as a ratio to bare's in the
// same round. A case's bare is the bare run that sent as many distinct
// requests (bare-100k for the 100k cases), if one ran, else bare: so wrk
// does the same work for both, and only the server differs.
func report(w io.Writer, specs []caseSpec, runs []run, rounds, conns, threads int, d, warmup, think time.Duration) {
	type key struct {
		kind            string
		round, sessions int
	}
	baselines := map[key]run{}
	for _, r := range runs {
		if r.spec.kind == "bare" || r.spec.kind == "bare-headers" {
			baselines[key{r.spec.kind, r.round, r.spec.sessions}] = r
		}
	}
	// baseline returns the run of kind in r's round that r is compared
	// with, and whether there is one.
	baseline := func(kind string, r run) (run, bool) {
		if b, ok := baselines[key{kind, r.round, r.spec.sessions}]; ok {
			return b, true
		}
		b, ok := baselines[key{kind, r.round, 1000}]
		return b, ok
	}
	bareRPS := func(r run) float64 { b, _ := baseline("bare", r); return b.rps() }
	bareCPU := func(r run) float64 { b, _ := baseline("bare", r); return b.cpuPerReq() }
	load := "saturation: every connection sends its next request as soon as the response is in"
	if think > 0 {
		load = fmt.Sprintf("paced: every connection pauses %v between a response and its next request", think)
	}
	fmt.Fprintf(w, "\n### %s\n\nwrk -t%d -c%d, %v measured after %v of warm-up, %d rounds; latencies from wrk's HdrHistogram.\n", load, threads, conns, d, warmup, rounds)
	fmt.Fprintf(w, "\nEvery run:\n\n")
	fmt.Fprintln(w, "| round | case | req/s | × bare | p50 | p90 | p99 | p99.9 | max | server CPU/req | store CPU/req | wrk CPU/req | × bare by CPU | cores: server / store / wrk / other / steal | errors | non-2xx |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range runs {
		cores := func(d time.Duration) float64 { return float64(d) / float64(r.wall) }
		fmt.Fprintf(w, "| %d | %s | %.0f | %.3f | %s | %s | %s | %s | %s | %s | %s | %s | %.3f | %.2f / %.2f / %.2f / %.2f / %.2f | %d | %d |\n",
			r.round, r.spec.name, r.rps(), r.rps()/bareRPS(r), ms(r.p50), ms(r.p90), ms(r.p99), ms(r.p999), ms(r.maxLat),
			perReq(r.serverCPU, r.requests), perReq(r.storeCPU, r.requests), perReq(r.wrkCPU, r.requests), bareCPU(r)/r.cpuPerReq(),
			cores(r.serverCPU), cores(r.storeCPU), cores(r.wrkCPU), cores(r.otherCPU), cores(r.steal), r.errors, r.non2xx)
	}

	fmt.Fprintf(w, "\nMedians over the rounds. \"× bare\" is the median of each round's ratio to bare's req/s in that round; \"by CPU\" the same for CPU time (server + its store's server + wrk) per request, bare's over the case's: the ratio of throughputs when the two CPUs are the limit, which other work on the machine disturbs less.\n\n")
	withHeaders := slices.ContainsFunc(specs, func(c caseSpec) bool { return c.kind == "bare-headers" })
	hdrCol, hdrSep := "", ""
	if withHeaders {
		fmt.Fprintf(w, "\"× bare-headers\" is the ratio to bare-headers' req/s in the same round (bare-headers-100k's for the 100k cases, if it ran).\n\n")
		hdrCol, hdrSep = " × bare-headers |", "---|"
	}
	fmt.Fprintln(w, "| case | req/s | × bare (min–max) | × bare by CPU (min–max) |"+hdrCol+" p50 | p99 | p99.9 | server CPU/req | store CPU/req | wrk CPU/req |")
	fmt.Fprintln(w, "|---|---|---|---|"+hdrSep+"---|---|---|---|---|---|")
	for _, s := range specs {
		var rps, ratio, cpuRatio, hdrRatio, p50, p99, p999, scpu, stcpu, wcpu []float64
		for _, r := range runs {
			if r.spec.name != s.name {
				continue
			}
			rps = append(rps, r.rps())
			ratio = append(ratio, r.rps()/bareRPS(r))
			cpuRatio = append(cpuRatio, bareCPU(r)/r.cpuPerReq())
			if b, ok := baseline("bare-headers", r); ok {
				hdrRatio = append(hdrRatio, r.rps()/b.rps())
			}
			p50 = append(p50, float64(r.p50))
			p99 = append(p99, float64(r.p99))
			p999 = append(p999, float64(r.p999))
			scpu = append(scpu, float64(r.serverCPU)/float64(r.requests))
			stcpu = append(stcpu, float64(r.storeCPU)/float64(r.requests))
			wcpu = append(wcpu, float64(r.wrkCPU)/float64(r.requests))
		}
		if len(rps) == 0 {
			continue
		}
		hdr := ""
		if withHeaders {
			hdr = fmt.Sprintf(" %.3f |", median(hdrRatio))
		}
		fmt.Fprintf(w, "| %s | %.0f | %.3f (%.3f–%.3f) | %.3f (%.3f–%.3f) |%s %s | %s | %s | %s | %s | %s |\n", s.name, median(rps),
			median(ratio), slices.Min(ratio), slices.Max(ratio), median(cpuRatio), slices.Min(cpuRatio), slices.Max(cpuRatio), hdr,
			ms(time.Duration(median(p50))), ms(time.Duration(median(p99))), ms(time.Duration(median(p999))),
			us(time.Duration(median(scpu))), us(time.Duration(median(stcpu))), us(time.Duration(median(wcpu))))
	}
	peerTable(w, specs, runs, bareRPS, bareCPU)
	if slices.ContainsFunc(runs, func(r run) bool { return r.userInstr > 0 }) {
		instructionsTable(w, specs, runs, baseline)
	}
}

// peerOf returns the name of the sessiond case that the peer case s
// compares with, the same store holding as many sessions (scs-redis-1k:
// redis-1k), and whether s is a peer case.
func peerOf(s caseSpec) (string, bool) {
	return strings.CutPrefix(s.name, "scs-")
}

// peerTable prints each peer case that ran beside the sessiond case on the
// same store: the medians over the rounds of each one's ratio to bare and
// of sessiond's throughput over the peer's in the same round, by req/s and
// by CPU time per request (server + store + wrk), and the medians of the
// server's and the store's CPU time per request.
func peerTable(w io.Writer, specs []caseSpec, runs []run, bareRPS, bareCPU func(run) float64) {
	type pair struct{ sessiond, peer string }
	var pairs []pair
	for _, s := range specs {
		if name, ok := peerOf(s); ok && slices.ContainsFunc(runs, func(r run) bool { return r.spec.name == s.name }) {
			pairs = append(pairs, pair{name, s.name})
		}
	}
	if len(pairs) == 0 {
		return
	}
	byRound := func(name string) map[int]run {
		m := map[int]run{}
		for _, r := range runs {
			if r.spec.name == name {
				m[r.round] = r
			}
		}
		return m
	}
	fmt.Fprintf(w, "\nsessiond beside alexedwards/scs on the same store, medians over the rounds. \"sessiond ÷ scs\" is the median of each round's ratio of sessiond's req/s to scs's; \"by CPU\" the same for CPU time (server + store + wrk) per request, scs's over sessiond's. \"–\": the sessiond case did not run.\n\n")
	fmt.Fprintln(w, "| sessiond case | × bare (min–max) | scs case | × bare (min–max) | sessiond ÷ scs (min–max) | by CPU (min–max) | server CPU/req: sessiond / scs | store CPU/req: sessiond / scs |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	// stats returns the median (min–max) of each run's ratio to bare, and
	// the medians of its server's and its store's CPU time per request.
	stats := func(rs map[int]run) (ratio, server, store string) {
		var ratios, scpu, stcpu []float64
		for _, r := range rs {
			ratios = append(ratios, r.rps()/bareRPS(r))
			scpu = append(scpu, float64(r.serverCPU)/float64(r.requests))
			stcpu = append(stcpu, float64(r.storeCPU)/float64(r.requests))
		}
		if len(ratios) == 0 {
			return "–", "–", "–"
		}
		return fmt.Sprintf("%.3f (%.3f–%.3f)", median(ratios), slices.Min(ratios), slices.Max(ratios)),
			us(time.Duration(median(scpu))), us(time.Duration(median(stcpu)))
	}
	for _, p := range pairs {
		sd, peer := byRound(p.sessiond), byRound(p.peer)
		var rps, cpu []float64
		for round, pr := range peer {
			if sr, ok := sd[round]; ok {
				rps = append(rps, sr.rps()/pr.rps())
				cpu = append(cpu, pr.cpuPerReq()/sr.cpuPerReq())
			}
		}
		vs, vsCPU := "–", "–"
		if len(rps) > 0 {
			vs = fmt.Sprintf("**%.2f** (%.2f–%.2f)", median(rps), slices.Min(rps), slices.Max(rps))
			vsCPU = fmt.Sprintf("%.2f (%.2f–%.2f)", median(cpu), slices.Min(cpu), slices.Max(cpu))
		}
		sdRatio, sdServer, sdStore := stats(sd)
		peerRatio, peerServer, peerStore := stats(peer)
		sdName := p.sessiond
		if len(sd) == 0 {
			sdName = p.sessiond + " (not run)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s / %s | %s / %s |\n", sdName, sdRatio, p.peer, peerRatio, vs, vsCPU, sdServer, peerServer, sdStore, peerStore)
	}
}

// instructionsTable reports the server instructions per request that
// -instructions counted: medians over the rounds, and the median of each
// round's ratio of bare's (user + kernel) to the case's.
func instructionsTable(w io.Writer, specs []caseSpec, runs []run, baseline func(string, run) (run, bool)) {
	perReq := func(r run) (user, kernel float64) {
		return float64(r.userInstr) / float64(r.requests), float64(r.kernelInstr) / float64(r.requests)
	}
	fmt.Fprintf(w, "\nServer instructions per request (perf stat), medians over the rounds; \"× bare\" is bare's total (user + kernel) over the case's, in the same round.\n\n")
	fmt.Fprintln(w, "| case | user | kernel | × bare (min–max) |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, s := range specs {
		var user, kernel, ratio []float64
		for _, r := range runs {
			if r.spec.name != s.name || r.userInstr == 0 {
				continue
			}
			u, k := perReq(r)
			user, kernel = append(user, u), append(kernel, k)
			if b, ok := baseline("bare", r); ok && b.userInstr > 0 {
				bu, bk := perReq(b)
				ratio = append(ratio, (bu+bk)/(u+k))
			}
		}
		if len(user) == 0 || len(ratio) == 0 {
			continue
		}
		fmt.Fprintf(w, "| %s | %.1fk | %.1fk | %.3f (%.3f–%.3f) |\n", s.name, median(user)/1e3, median(kernel)/1e3, median(ratio), slices.Min(ratio), slices.Max(ratio))
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }

func perReq(d time.Duration, n int64) string {
	if n == 0 {
		return "–"
	}
	return us(d / time.Duration(n))
}
