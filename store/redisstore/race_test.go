//go:build race

package redisstore

// raceEnabled is true when the tests run with the race detector, which
// makes them several times slower.
const raceEnabled = true
