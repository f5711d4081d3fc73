package users

import "time"

// ParseHash exposes parseHash to the tests in package users_test.
var ParseHash = parseHash

// HoldSlots takes every hashing slot of a, as logins in progress would,
// sets how long a password check waits for a slot to wait, and returns a
// function that gives the slots back.
func (a *Accounts) HoldSlots(wait time.Duration) (release func()) {
	a.wait = wait
	for range cap(a.slots) {
		a.slots <- struct{}{}
	}
	return func() {
		for range cap(a.slots) {
			<-a.slots
		}
	}
}

// SetWait sets how long a password check waits for a hashing slot.
func (a *Accounts) SetWait(wait time.Duration) { a.wait = wait }
