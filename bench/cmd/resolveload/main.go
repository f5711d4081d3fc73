// Command resolveload measures sessiond's /resolve endpoint under load
// against a bare net/http handler in the same run, and beside
// alexedwards/scs answering the same way on the same stores: wrk at 64
// keep-alive connections on loopback, each case in a server process of
// its own, rounds alternating between the cases. It stops by itself. See
// ../../README.md and resolve.sh.
//
//	resolveload [flags]        drive: start the servers, run the rounds, print the tables
//	resolveload serve [flags]  one server under test (started by the driver)
package main

import (
	"bufio"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed resolve.lua
var luaScript []byte

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		err = serveMain(os.Args[2:])
	} else {
		err = drive(os.Args[1:])
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "resolveload:", err)
		os.Exit(1)
	}
}

// A caseSpec is one server under test.
type caseSpec struct {
	name string
	// kind is bare, bare-headers, sqlite, sqlite-assertion (with
	// X-Session-Assertion), memstore, redis,
	// redis-unfenced, redis-nocache, postgres (sessiond), or scs-memstore,
	// scs-redis, scs-postgres (the peer, alexedwards/scs).
	kind     string
	sessions int
	// touch sets the server's clock past TouchInterval for every session
	// before each run, so that a request's first sight of a session writes
	// its idle deadline back to the store.
	touch bool
}

var knownCases = []caseSpec{
	{"bare", "bare", 1000, false},
	{"bare-headers", "bare-headers", 1000, false},
	{"bare-100k", "bare", 100_000, false},
	{"bare-headers-100k", "bare-headers", 100_000, false},
	{"sqlite-1k", "sqlite", 1000, false},
	{"sqlite-100k", "sqlite", 100_000, false},
	{"sqlite-1k-policy", "sqlite", 1000, false},
	{"memstore-1k", "memstore", 1000, false},
	{"memstore-100k", "memstore", 100_000, false},
	{"sqlite-1k-assertion", "sqlite-assertion", 1000, false},
	{"sqlite-1k-touch", "sqlite", 1000, true},
	{"sqlite-100k-touch", "sqlite", 100_000, true},
	{"redis-1k", "redis", 1000, false},
	{"redis-100k", "redis", 100_000, false},
	{"redis-1k-unfenced", "redis-unfenced", 1000, false},
	{"redis-100k-nocache", "redis-nocache", 100_000, false},
	{"postgres-1k", "postgres", 1000, false},
	{"postgres-100k", "postgres", 100_000, false},
	{"scs-memstore-1k", "scs-memstore", 1000, false},
	{"scs-memstore-100k", "scs-memstore", 100_000, false},
	{"scs-redis-1k", "scs-redis", 1000, false},
	{"scs-redis-100k", "scs-redis", 100_000, false},
	{"scs-postgres-1k", "scs-postgres", 1000, false},
	{"scs-postgres-100k", "scs-postgres", 100_000, false},
}

// casePaths are the request targets of the cases whose proxy asks
// /resolve for more than a valid session (a per-route policy that every
// preloaded session meets: a role it holds and a recent sign-in); every
// other case asks /resolve alone.
var casePaths = map[string]string{"sqlite-1k-policy": "/resolve?role=member&max_age=86400"}

// path is the request target of c's load.
func (c caseSpec) path() string {
	if p, ok := casePaths[c.name]; ok {
		return p
	}
	return "/resolve"
}

const defaultCases = "bare,bare-headers,sqlite-1k,sqlite-100k,memstore-1k,memstore-100k,sqlite-100k-touch"

// child is a running server process.
type child struct {
	spec       caseSpec
	url, ctl   string
	cookieFile string
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	runs       int // load runs so far, for the touch cases' clock
}

// run is the outcome of one wrk run against one case.
type run struct {
	round int
	// think is the pause each connection makes between a response and
	// its next request; zero for the saturation runs.
	think                   time.Duration
	spec                    caseSpec
	requests                int64
	seconds                 float64
	errors                  int64 // connect+read+write+timeout
	non2xx                  int64
	p50, p90, p99, p999     time.Duration
	maxLat                  time.Duration
	serverCPU, wrkCPU, wall time.Duration
	// storeCPU is the CPU time the server of the case's store (Redis,
	// PostgreSQL) used meanwhile; zero for a store in the server process.
	storeCPU time.Duration
	// otherCPU is the CPU time the rest of the machine used meanwhile
	// (other processes, kernel threads, interrupt work not charged to the
	// server, its store or wrk); steal is the time the hypervisor gave
	// other guests.
	otherCPU, steal time.Duration
	// userInstr and kernelInstr are the instructions the server executed
	// in user space and in the kernel, if counted (-instructions).
	userInstr, kernelInstr int64
}

func (r run) rps() float64 { return float64(r.requests) / r.seconds }

// cpuPerReq is the CPU time the server, its store and wrk spent per
// request.
func (r run) cpuPerReq() float64 {
	return float64(r.serverCPU+r.storeCPU+r.wrkCPU) / float64(r.requests)
}

func drive(args []string) error {
	fs := flag.NewFlagSet("resolveload", flag.ContinueOnError)
	casesFlag := fs.String("cases", defaultCases, "cases to run, in this order each round (bare is required: the ratios are against it); known: "+caseNames())
	rounds := fs.Int("rounds", 3, "rounds; each runs every case once")
	duration := fs.Duration("duration", 10*time.Second, "measured time of one run")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured load before each run")
	conns := fs.Int("c", 64, "concurrent keep-alive connections")
	threads := fs.Int("t", 2, "wrk threads")
	profile := fs.String("profile", "", "after the rounds, take a CPU profile of each of these cases' servers (comma-separated) under the same load")
	profileFor := fs.Duration("profile-duration", 20*time.Second, "length of the CPU profile")
	quiet := fs.Float64("quiet", 0.2, "this is a shared machine: before each run, wait (up to -quiet-wait) until the rest of it has used less than this many cores for 3 s; and run again (up to -retries times) a run during which it, or the hypervisor's steal, took more on average")
	quietWait := fs.Duration("quiet-wait", 90*time.Second, "longest wait for -quiet; the run then goes ahead and its \"other\" column shows the interference")
	instructions := fs.Bool("instructions", false, "count each run's server instructions per request with perf stat (user space and kernel, from the CPU's counters, which other guests and clock changes barely move, unlike CPU time); perf's counter switching slows the servers, so compare req/s only between runs that both counted")
	retries := fs.Int("retries", 2, "most times a run disturbed by the rest of the machine is run again; the last attempt is kept")
	think := fs.Duration("think", 10*time.Millisecond, "after each round's saturation runs, run every case again with each connection pausing this long (whole ms) between a response and its next request, for latency below saturation; 0: skip")
	out := fs.String("out", "", "directory for the databases, server logs and profiles (default: a new temporary directory, removed at the end unless -profile is set)")
	redisURL := fs.String("redis", defaultRedis, "redis:// URL of the Redis for the redis-* cases (one server, on this machine for its CPU time to count); each case keeps its keys under resolveload:CASE: and removes them")
	pgURL := fs.String("postgres", defaultPostgres, "URL of the PostgreSQL database for the postgres-* cases (on this machine, for its CPU time to count); each case works in a schema resolveload_CASE that it drops at the end")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found: apt-get install -y wrk")
	}
	if *instructions {
		if _, err := exec.LookPath("perf"); err != nil {
			return errors.New("-instructions: perf not found: apt-get install -y linux-perf")
		}
	}
	var specs []caseSpec
	for name := range strings.SplitSeq(*casesFlag, ",") {
		i := slices.IndexFunc(knownCases, func(c caseSpec) bool { return c.name == name })
		if i < 0 {
			return fmt.Errorf("unknown case %q; known: %s", name, caseNames())
		}
		specs = append(specs, knownCases[i])
	}
	if !slices.ContainsFunc(specs, func(c caseSpec) bool { return c.name == "bare" }) {
		return errors.New("-cases must include bare")
	}
	var profiles []string
	if *profile != "" {
		profiles = strings.Split(*profile, ",")
	}
	for _, p := range profiles {
		if !slices.ContainsFunc(specs, func(c caseSpec) bool { return c.name == p }) {
			return fmt.Errorf("-profile: %q is not among -cases", p)
		}
	}

	dir := *out
	if dir == "" {
		d, err := os.MkdirTemp("", "resolveload-")
		if err != nil {
			return err
		}
		dir = d
		if *profile == "" {
			defer os.RemoveAll(dir)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	script := filepath.Join(dir, "resolve.lua")
	if err := os.WriteFile(script, luaScript, 0o600); err != nil {
		return err
	}

	logf("machine: %d CPUs (GOMAXPROCS %d), %s; server and wrk share them, nothing is pinned", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	logf("starting %d servers in %s (preloading sessions)", len(specs), dir)
	children, err := startAll(specs, dir, "-redis", *redisURL, "-postgres", *pgURL)
	defer func() {
		for _, c := range children {
			c.stop()
		}
	}()
	if err != nil {
		return err
	}

	w := wrkRunner{script: script, conns: *conns, threads: *threads, quiet: *quiet, quietWait: *quietWait, retries: *retries, instructions: *instructions}
	phases := []time.Duration{0}
	if *think > 0 {
		phases = append(phases, *think)
	}
	var runs []run
	for round := 1; round <= *rounds; round++ {
		for _, think := range phases {
			for _, c := range children {
				var r run
				for attempt := 0; attempt <= w.retries; attempt++ {
					w.waitQuiet()
					if err := c.setClock(c.clockForNextRun()); err != nil {
						return err
					}
					if _, _, err := w.wrk(c, *warmup, think); err != nil {
						return err
					}
					if r, err = w.measure(c, *duration, think); err != nil {
						return err
					}
					other, steal := float64(r.otherCPU)/float64(r.wall), float64(r.steal)/float64(r.wall)
					logf("round %d think %-4v %-18s %8.0f req/s  p50 %-8v p99 %-8v errors %d non-2xx %d  other CPU %.2f cores, steal %.2f",
						round, think, c.spec.name, r.rps(), r.p50, r.p99, r.errors, r.non2xx, other, steal)
					if other+steal < w.quiet {
						break
					}
					if attempt < w.retries {
						logf("disturbed by the rest of the machine: running it again")
					}
				}
				r.round = round
				runs = append(runs, r)
			}
		}
	}
	for _, think := range phases {
		var rs []run
		for _, r := range runs {
			if r.think == think {
				rs = append(rs, r)
			}
		}
		if len(rs) > 0 {
			report(os.Stdout, specs, rs, *rounds, *conns, *threads, *duration, *warmup, think)
		}
	}

	for _, p := range profiles {
		i := slices.IndexFunc(children, func(c *child) bool { return c.spec.name == p })
		var (
			path string
			r    run
			err  error
		)
		for attempt := 0; attempt <= w.retries; attempt++ {
			if path, r, err = w.profile(children[i], *profileFor, dir); err != nil {
				return err
			}
			if other := float64(r.otherCPU) / float64(r.wall); other < w.quiet {
				break
			} else if attempt < w.retries {
				logf("profile of %s disturbed by the rest of the machine (%.2f cores): taking it again", p, other)
			}
		}
		fmt.Printf("\nCPU profile of %s under load (%.0f req/s, %.1f µs of server CPU per request, %d errors, %d non-2xx answers, %.2f cores used by the rest of the machine meanwhile): %s\n  go tool pprof -top %s\n",
			p, r.rps(), float64(r.serverCPU)/float64(r.requests)/1e3, r.errors, r.non2xx, float64(r.otherCPU)/float64(r.wall), path, path)
	}
	return nil
}

func caseNames() string {
	var names []string
	for _, c := range knownCases {
		names = append(names, c.name)
	}
	return strings.Join(names, ",")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// clockForNextRun is where the server's clock starts the next load run
// (warm-up and measurement): at t0, when every session was last seen, or,
// for a touch case, more than TouchInterval (1 minute) past anything an
// earlier run can have written (a run lasts well under 30 s).
func (c *child) clockForNextRun() time.Duration {
	c.runs++
	if !c.spec.touch {
		return 0
	}
	return 61*time.Second + time.Duration(c.runs-1)*90*time.Second
}

// startAll starts a server process per case, preloading in parallel,
// with the extra arguments args.
func startAll(specs []caseSpec, dir string, args ...string) ([]*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	children := make([]*child, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		wg.Go(func() {
			children[i], errs[i] = start(self, spec, filepath.Join(dir, spec.name), args)
		})
	}
	wg.Wait()
	children = slices.DeleteFunc(children, func(c *child) bool { return c == nil })
	return children, errors.Join(errs...)
}

func start(self string, spec caseSpec, dir string, args []string) (*child, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{"serve", "-kind", spec.kind, "-sessions", strconv.Itoa(spec.sessions), "-dir", dir}, args...)...)
	cmd.Stderr = logFile
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{spec: spec, cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 4 || f[0] != "READY" {
		c.stop()
		return nil, fmt.Errorf("%s: server did not start (%q, %v); see %s", spec.name, line, err, logFile.Name())
	}
	c.url, c.ctl, c.cookieFile = f[1], f[2], f[3]
	logf("%s ready at %s after %v (pid %d)", spec.name, c.url, time.Since(began).Round(time.Millisecond), cmd.Process.Pid)
	return c, nil
}

func (c *child) stop() {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// storeCPU returns the CPU time the server of c's store has used so far.
func (c *child) storeCPU() (time.Duration, error) {
	res, err := http.Get(c.ctl + "/store-cpu")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: the store's CPU time: %s: %s", c.spec.name, res.Status, b)
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return time.Duration(n), err
}

func (c *child) setClock(at time.Duration) error {
	res, err := http.Post(c.ctl+"/clock?at="+at.String(), "", nil)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: setting the clock: %s", c.spec.name, res.Status)
	}
	return nil
}

// cpuTime is the user+system CPU time the process pid has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are fields 14 and 15 of the whole line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}

type wrkRunner struct {
	script         string
	conns, threads int
	quiet          float64 // cores
	quietWait      time.Duration
	retries        int
	instructions   bool // count the server's instructions (perf stat)
}

// waitQuiet waits until the machine, with no load run going, has been
// busy for less than w.quiet cores over 3 seconds, or w.quietWait has
// passed: other people's work on this shared machine skews a run.
func (w wrkRunner) waitQuiet() {
	deadline := time.Now().Add(w.quietWait)
	for waited := false; ; waited = true {
		b0, _ := machineCPU()
		time.Sleep(3 * time.Second)
		b1, _ := machineCPU()
		busy := float64(b1-b0) / float64(3*time.Second)
		switch {
		case busy < w.quiet:
			if waited {
				logf("quiet again (%.2f cores busy)", busy)
			}
			return
		case time.Now().After(deadline):
			logf("still %.2f cores busy after waiting %v: going ahead", busy, w.quietWait)
			return
		case !waited:
			logf("machine busy (%.2f cores used by others): waiting", busy)
		}
		time.Sleep(2 * time.Second)
	}
}

// wrk runs wrk against c for d and returns the finished command and its
// output.
func (w wrkRunner) wrk(c *child, d, think time.Duration) (*exec.Cmd, string, error) {
	cmd := exec.Command("wrk", "-t", strconv.Itoa(w.threads), "-c", strconv.Itoa(w.conns),
		"-d", fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds())), "-s", w.script, c.url+"/resolve", "--", c.cookieFile, c.spec.path())
	cmd.Env = append(os.Environ(), fmt.Sprintf("RESOLVELOAD_THINK_MS=%d", think.Milliseconds()))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, "", fmt.Errorf("wrk against %s: %v\n%s", c.spec.name, err, out.String())
	}
	return cmd, out.String(), nil
}

var resultRE = regexp.MustCompile(`RESULT (.*)`)

func (w wrkRunner) measure(c *child, d, think time.Duration) (run, error) {
	r := run{spec: c.spec, think: think}
	before, err := cpuTime(c.cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	store0, err := c.storeCPU()
	if err != nil {
		return r, err
	}
	var count *perfStat
	if w.instructions {
		if count, err = startPerfStat(c.cmd.Process.Pid, filepath.Dir(w.script)); err != nil {
			return r, err
		}
		defer count.stop()
	}
	busy0, steal0 := machineCPU()
	began := time.Now()
	cmd, out, err := w.wrk(c, d, think)
	if err != nil {
		return r, err
	}
	r.wall = time.Since(began)
	busy1, steal1 := machineCPU()
	if count != nil {
		if r.userInstr, r.kernelInstr, err = count.stop(); err != nil {
			return r, err
		}
	}
	after, err := cpuTime(c.cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	store1, err := c.storeCPU()
	if err != nil {
		return r, err
	}
	r.serverCPU = after - before
	r.storeCPU = max(0, store1-store0)
	r.wrkCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	r.otherCPU = max(0, busy1-busy0-r.serverCPU-r.storeCPU-r.wrkCPU)
	r.steal = steal1 - steal0
	m := resultRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk against %s: no RESULT line in\n%s", c.spec.name, out)
	}
	v := map[string]float64{}
	for kv := range strings.FieldsSeq(m[1]) {
		k, s, _ := strings.Cut(kv, "=")
		v[k], _ = strconv.ParseFloat(s, 64)
	}
	us := func(k string) time.Duration { return time.Duration(v[k] * float64(time.Microsecond)) }
	r.requests = int64(v["requests"])
	r.seconds = v["duration_us"] / 1e6
	r.errors = int64(v["connect"] + v["read"] + v["write"] + v["timeout"])
	r.non2xx = int64(v["status"])
	r.p50, r.p90, r.p99, r.p999, r.maxLat = us("p50_us"), us("p90_us"), us("p99_us"), us("p999_us"), us("max_us")
	if r.requests == 0 {
		return r, fmt.Errorf("wrk against %s: no requests completed\n%s", c.spec.name, out)
	}
	return r, nil
}

// profile takes a CPU profile of c's server while wrk loads it, and
// returns the profile's path and the load run that covered it.
func (w wrkRunner) profile(c *child, d time.Duration, dir string) (string, run, error) {
	w.waitQuiet()
	if err := c.setClock(c.clockForNextRun()); err != nil {
		return "", run{}, err
	}
	path := filepath.Join(dir, c.spec.name+".cpu.pprof")
	type result struct {
		r   run
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := w.measure(c, d+3*time.Second, 0)
		done <- result{r, err}
	}()
	time.Sleep(2 * time.Second) // past wrk's connection set-up
	err := func() error {
		res, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", c.ctl, int(d.Seconds())))
		if err != nil {
			return err
		}
		defer res.Body.Close()
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, res.Body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}()
	res := <-done
	return path, res.r, errors.Join(err, res.err)
}

// perfStat counts the instructions a process executes, with perf stat,
// from startPerfStat until stop.
type perfStat struct {
	cmd  *exec.Cmd
	path string
	errs strings.Builder
}

func startPerfStat(pid int, dir string) (*perfStat, error) {
	p := &perfStat{path: filepath.Join(dir, "perf-stat.csv")}
	p.cmd = exec.Command("perf", "stat", "-x,", "-e", "instructions:u,instructions:k", "-p", strconv.Itoa(pid), "-o", p.path)
	p.cmd.Stderr = &p.errs
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf stat: %w", err)
	}
	time.Sleep(200 * time.Millisecond) // attached before the load starts; the idle server adds next to nothing
	return p, nil
}

// stop ends the count and returns it; once stopped, it returns zeros.
func (p *perfStat) stop() (user, kernel int64, err error) {
	if p.cmd.ProcessState != nil {
		return 0, 0, nil
	}
	p.cmd.Process.Signal(os.Interrupt)
	p.cmd.Wait()
	b, err := os.ReadFile(p.path)
	if err != nil {
		return 0, 0, fmt.Errorf("perf stat: %w (%s)", err, p.errs.String())
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue // "<not counted>" or "<not supported>"
		}
		switch f[2] {
		case "instructions:u":
			user = n
		case "instructions:k":
			kernel = n
		}
	}
	if user == 0 {
		return 0, 0, fmt.Errorf("perf stat counted no instructions (no CPU counters on this machine?):\n%s%s", b, p.errs.String())
	}
	return user, kernel, nil
}

// machineCPU returns the CPU time all CPUs have spent busy (user, nice,
// system, irq, softirq) and stolen, from /proc/stat.
func machineCPU() (busy, steal time.Duration) {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	n := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(v) * time.Second / 100 // USER_HZ
	}
	return n(1) + n(2) + n(3) + n(6) + n(7), n(8)
}
