package redisstore

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// nodeMap maps the hash slots of a Redis Cluster to the clients of the
// masters that hold them, so that lookups of records in different slots of
// one node share fences (see "On Redis Cluster" in docs/stores/redis.md).
// A client of a node (from rueidis.Client.Nodes) sends its commands on the
// one connection the Store keeps to that node, and reads through that
// connection's client-side cache: a fence and the read that follows it
// both go through that client, so they meet the same cache whatever the
// map says. The map only decides which node is asked; a read from a node
// that no longer holds the slot fails (MOVED), and the lookup then reads
// Redis without the cache.
type nodeMap struct {
	mu    sync.RWMutex
	slots []uint16 // per slot, 1 + the index of its node in nodes; 0: unknown
	nodes []rueidis.Client
	// refreshing is set while a refresh runs; next is the earliest time,
	// in Unix nanoseconds, another may start.
	refreshing atomic.Bool
	next       atomic.Int64
}

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// nodeRefreshInterval is how often the map is read again from the Cluster,
// and the shortest time between two reads asked for by a MOVED.
const nodeRefreshInterval = 5 * time.Second

// node returns the client of the node that holds slot, and its index; ok
// is false if the map does not know it. It starts a refresh in the
// background when the map is older than nodeRefreshInterval.
func (st *Store) node(slot uint16) (c rueidis.Client, idx uint16, ok bool) {
	m := &st.nodes
	if time.Now().UnixNano() >= m.next.Load() {
		st.refreshNodes()
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if int(slot) >= len(m.slots) || m.slots[slot] == 0 {
		return nil, 0, false
	}
	i := m.slots[slot] - 1
	return m.nodes[i], i, true
}

// refreshNodes reads the map again, in the background, unless a refresh
// is running or ran less than nodeRefreshInterval ago.
func (st *Store) refreshNodes() {
	m := &st.nodes
	if time.Now().UnixNano() < m.next.Load() || !m.refreshing.CompareAndSwap(false, true) {
		return
	}
	m.next.Store(time.Now().Add(nodeRefreshInterval).UnixNano())
	go func() {
		defer m.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), st.timeout)
		defer cancel()
		slots, nodes := st.readNodes(ctx)
		m.mu.Lock()
		m.slots, m.nodes = slots, nodes
		m.mu.Unlock()
	}()
}

// readNodes reads which master holds each slot (CLUSTER SLOTS), and
// returns the map; slots whose master rueidis has no client for are left
// unknown, as is everything if the Cluster cannot be asked.
func (st *Store) readNodes(ctx context.Context) (slots []uint16, nodes []rueidis.Client) {
	clients := st.c.Nodes()
	for addr, c := range clients {
		reply, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
		if err != nil {
			continue
		}
		host, _, _ := net.SplitHostPort(addr)
		slots = make([]uint16, clusterSlots)
		index := map[string]uint16{}
		for _, r := range reply {
			v, err := r.ToArray()
			if err != nil || len(v) < 3 {
				continue
			}
			from, err1 := v[0].AsInt64()
			to, err2 := v[1].AsInt64()
			master, err3 := v[2].ToArray()
			if err1 != nil || err2 != nil || err3 != nil || len(master) < 2 || from < 0 || to >= clusterSlots || from > to {
				continue
			}
			ip, _ := master[0].ToString()
			port, err := master[1].AsInt64()
			if err != nil {
				continue
			}
			if ip == "" || ip == "?" {
				ip = host
			}
			a := net.JoinHostPort(ip, strconv.FormatInt(port, 10))
			c, ok := clients[a]
			if !ok {
				continue
			}
			i, ok := index[a]
			if !ok {
				nodes = append(nodes, c)
				i = uint16(len(nodes))
				index[a] = i
			}
			for s := from; s <= to; s++ {
				slots[s] = i
			}
		}
		return slots, nodes
	}
	return nil, nil
}

// keySlot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of
// its hash tag, the part between the first '{' and the next '}' if that
// is not empty, or of the whole key, modulo 16384.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % clusterSlots
}
