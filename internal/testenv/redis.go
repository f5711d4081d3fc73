package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RedisEnv names the environment variable with the address (host:port) of
// the shared test Redis; DefaultRedis is used when it is empty.
const (
	RedisEnv     = "SESSIOND_TEST_REDIS"
	DefaultRedis = "127.0.0.1:6379"
)

var (
	redisOnce sync.Once
	redisAddr string
	redisErr  error
)

// Redis returns the address of the shared test Redis, after checking once
// per process that it answers PING. If it does not, Redis fails the test
// when the environment variable CI is set and skips it otherwise. Tests
// that share it must keep their keys apart (a key prefix of their own).
func Redis(t testing.TB) string {
	t.Helper()
	redisOnce.Do(func() {
		redisAddr = os.Getenv(RedisEnv)
		if redisAddr == "" {
			redisAddr = DefaultRedis
		}
		redisErr = RedisCommand(redisAddr, "PING")
	})
	if redisErr != nil {
		unavailable(t, fmt.Sprintf("Redis is unreachable at %s (%v): start it (redis-server --port 6379 --save '' --appendonly no) or set %s to the host:port of a Redis 7 server", redisAddr, redisErr, RedisEnv))
	}
	return redisAddr
}

// unavailable fails the test under CI and skips it otherwise.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// RedisCommand sends one command (arguments without spaces) to the Redis at
// addr, on a connection of its own, and returns an error if the reply is
// an error or does not come within 2s.
func RedisCommand(addr string, args ...string) error {
	_, err := RedisReply(addr, args...)
	return err
}

// RedisReply is RedisCommand that also returns the reply: a simple string,
// an integer or a bulk string, as text, or for an array its elements joined
// by newlines.
func RedisReply(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn))
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		var parts []string
		for range n {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// RedisServerBinary returns the path of redis-server, failing the test
// under CI and skipping it otherwise if there is none.
func RedisServerBinary(t testing.TB) string {
	t.Helper()
	path, err := osexec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server is not installed (apt-get install redis-server): "+err.Error())
	}
	return path
}

// RedisServer is a redis-server process that a test started.
type RedisServer struct {
	t    testing.TB
	bin  string
	args []string
	// Port is the TCP port the server listens on, on 127.0.0.1.
	Port int
	// Dir is the server's working directory, a temporary one.
	Dir string

	mu  sync.Mutex
	cmd *osexec.Cmd
}

// StartRedis starts a redis-server on a free port of 127.0.0.1, with no
// persistence and the extra arguments args (such as "--cluster-enabled",
// "yes"), waits until it answers PING, and stops it when the test ends.
// Its log is in Dir/redis.log.
func StartRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	r := &RedisServer{t: t, bin: RedisServerBinary(t), Port: FreePort(t), Dir: t.TempDir()}
	r.args = append([]string{
		"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", r.Dir, "--logfile", filepath.Join(r.Dir, "redis.log"),
	}, args...)
	t.Cleanup(r.Kill)
	r.Start()
	return r
}

// Addr returns the server's host:port.
func (r *RedisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port)) }

// Log returns what the server has written to its log so far.
func (r *RedisServer) Log() string {
	log, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
	return string(log)
}

// Start starts the server (again, after Kill, on the same port) and waits
// up to 10s until it answers PING.
func (r *RedisServer) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		r.t.Fatal("testenv: redis-server is already running")
	}
	cmd := osexec.Command(r.bin, r.args...)
	cmd.Dir = r.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("testenv: start redis-server: %v", err)
	}
	r.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := RedisCommand(r.Addr(), "PING")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("testenv: redis-server on port %d does not answer: %v\n%s", r.Port, err, r.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL), as a crash would, and waits
// for it to exit. It does nothing if the server is not running.
func (r *RedisServer) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago,
// and whose Redis Cluster bus port (the port plus 10000) was free too.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		if err != nil {
			continue
		}
		bus.Close()
		return port
	}
	t.Fatal("testenv: no free port")
	return 0
}
